"""Extractive reader on a Hugging Face question-answering model (SQuAD 2.0 style, can abstain).

Scores follow the official SQuAD 2.0 post-processing: a span's logit is its start plus end
logit, the "no answer" logit is the CLS start plus end logit, minimised over every window of
the question. ``sigmoid(span - null - margin)`` is then 0.5 exactly when a span is as likely
as no answer.

Example::

    reader = TransformersReader(Settings(reader_model="qa/models/reader"))
    reader.load()
    reading = reader.read("Who founded it?", hits)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa.errors import ModelUnavailable
from qa.read.answer_types import AnswerTyper
from qa.settings import Settings
from qa.types import Hit, Reading, Span

# Display window around a span (characters); context is for people, not for scoring.
CONTEXT_CHARS = 300
_SENTENCE_END = ".!?"


@dataclass(frozen=True)
class ScoredSpan:
    """A candidate span with its raw logit sum (start + end), offsets into the article."""

    doc_id: str
    start: int
    end: int
    text: str
    logit: float
    context: str
    fit: float | None = None  # answer-type fit (0..1), None when the question is open or typing is off

    def adjusted(self, type_weight: float) -> float:
        """The logit less ``type_weight`` times the misfit of the span's type."""
        return self.logit if self.fit is None else self.logit - type_weight * (1.0 - self.fit)


@dataclass(frozen=True)
class ScoredQuestion:
    """Raw reader output for one question: candidates best first and the minimum null logit."""

    candidates: list[ScoredSpan]
    min_null: float


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def cpu_has_bf16() -> bool:
    """True where the CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, p, lambda: False)()) for p in probes)


def resolve_precision(setting: str) -> str:
    """``fp32`` or ``bf16`` for the ``reader_precision`` setting (``auto`` asks the CPU)."""
    if setting == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    return setting


def _looks_like_path(name: str) -> bool:
    """A local path rather than a hub id (``org/name``)."""
    return Path(name).is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name


def sentence_window(text: str, start: int, end: int, cap: int = CONTEXT_CHARS) -> str:
    """The sentence(s) of ``text`` around ``text[start:end]``, at most ``cap`` characters."""
    lo = start
    while lo > 0:
        ch = text[lo - 1]
        if ch == "\n" or (ch in _SENTENCE_END and (lo >= len(text) or text[lo].isspace())):
            break
        lo -= 1
    hi = end
    while hi < len(text):
        ch = text[hi]
        if ch == "\n":
            break
        hi += 1
        if ch in _SENTENCE_END and (hi >= len(text) or text[hi].isspace()):
            break
    if hi - lo > cap:
        room = max(0, cap - (end - start))
        lo = max(lo, start - room // 2)
        hi = min(hi, max(end, lo + cap))
    return text[lo:hi].strip()


class TransformersReader:
    """Reads spans with an extractive QA model from ``settings.reader_model``.

    The constructor is cheap; call :meth:`load` once before reading.
    """

    name = "transformers"

    def __init__(self, settings: Settings, typer: AnswerTyper | None = None) -> None:
        self.settings = settings
        self._tokenizer: Any = None
        self._model: Any = None
        self.precision = "fp32"  # resolved from settings.reader_precision by load()
        # Answer typing re-ranks the n-best; off (no spaCy) when its weight is 0 and none is given.
        self.typer = typer if typer is not None or settings.reader_type_weight <= 0 else AnswerTyper()

    def load(self) -> None:
        """Load the tokenizer and model (fp16 weights are cast to float32 for CPU)."""
        if self.typer is not None:
            self.typer.load()
        if self._model is not None:
            return
        name = self.settings.reader_model
        hint = "set QA_READER_MODEL to a local model folder, or QA_READER=span to use the span reader"
        local = Path(name).expanduser()
        if local.exists():
            if not (local / "config.json").is_file():
                raise ModelUnavailable(f"reader model folder {local} has no config.json; {hint}")
        elif _looks_like_path(name):
            raise ModelUnavailable(f"reader model folder {local} does not exist; {hint}")
        try:
            from transformers import AutoModelForQuestionAnswering, AutoTokenizer

            source = str(local) if local.exists() else name
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForQuestionAnswering.from_pretrained(source)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelUnavailable(f"cannot load reader model {name!r} ({first}); {hint}") from exc
        if not getattr(tokenizer, "is_fast", False):
            raise ModelUnavailable(f"reader model {name!r} has no fast tokenizer (needed for offsets); {hint}")
        self._tokenizer = tokenizer
        self._model = model.float().eval()
        self.precision = resolve_precision(self.settings.reader_precision)

    def read(self, question: str, hits: Sequence[Hit]) -> Reading:
        """Candidate spans for one question (wraps :meth:`read_batch`)."""
        return self.read_batch([question], [list(hits)])[0]

    def read_batch(self, questions: Sequence[str], hits: Sequence[Sequence[Hit]]) -> list[Reading]:
        """Candidate spans, best first, with calibrated scores and a no-answer estimate."""
        margin = self.settings.no_answer_margin
        weight = self.settings.reader_type_weight
        readings: list[Reading] = []
        for scored in self.score_batch(questions, hits):
            if not scored.candidates:
                readings.append(Reading(spans=[], no_answer=1.0))
                continue
            ranked = sorted(((c.adjusted(weight), c) for c in scored.candidates), key=lambda x: -x[0])
            spans = [
                Span(doc_id=c.doc_id, start=c.start, end=c.end, text=c.text,
                     score=_sigmoid(logit - scored.min_null - margin), context=c.context)
                for logit, c in ranked
            ]
            readings.append(Reading(spans=spans, no_answer=_sigmoid(scored.min_null + margin - ranked[0][0])))
        return readings

    def score_batch(self, questions: Sequence[str], hits: Sequence[Sequence[Hit]]) -> list[ScoredQuestion]:
        """Raw logits per question: the ``reader_n_best`` best distinct spans and the minimum null logit."""
        if len(questions) != len(hits):
            raise ValueError(f"got {len(questions)} questions but {len(hits)} hit lists")
        if self._model is None:
            raise ModelUnavailable("the transformers reader is not loaded; call load() first")
        return [self._score_one(q, list(h)) for q, h in zip(questions, hits, strict=True)]

    def _question_for(self, question: str) -> str:
        """The question, cut so that every window still holds ``stride`` new context tokens."""
        s = self.settings
        limit = max(1, s.reader_max_length - s.reader_stride - 4)
        enc = self._tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        return question if len(offsets) <= limit else question[: offsets[limit - 1][1]]

    def _score_one(self, question: str, hits: list[Hit]) -> ScoredQuestion:
        import torch

        s = self.settings
        chunks = [h.chunk for h in hits]
        if not chunks or not question.strip():
            return ScoredQuestion(candidates=[], min_null=math.inf)
        q = self._question_for(question.strip())
        enc = self._tokenizer(
            [q] * len(chunks),
            [c.text for c in chunks],
            truncation="only_second",
            max_length=s.reader_max_length,
            stride=s.reader_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="longest",
            return_tensors="pt",
        )
        inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
        bf16 = self.precision == "bf16"
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = self._model(**inputs)
        start_logits = out.start_logits.float()
        end_logits = out.end_logits.float()
        offsets = enc["offset_mapping"].tolist()
        owner = enc["overflow_to_sample_mapping"].tolist()
        # (doc_id, article start, article end) -> (logit, chunk index, chunk start, chunk end)
        best: dict[tuple[str, int, int], tuple[float, int, int, int]] = {}
        min_null = math.inf
        for f in range(start_logits.shape[0]):
            c_idx = owner[f]
            chunk = chunks[c_idx]
            in_ctx = torch.tensor([sid == 1 for sid in enc.sequence_ids(f)])
            min_null = min(min_null, float(start_logits[f, 0] + end_logits[f, 0]))
            if not bool(in_ctx.any()):
                continue
            k = min(s.reader_n_best, int(in_ctx.sum()))
            st = torch.topk(start_logits[f].masked_fill(~in_ctx, -math.inf), k)
            en = torch.topk(end_logits[f].masked_fill(~in_ctx, -math.inf), k)
            for i, si in zip(st.indices.tolist(), st.values.tolist(), strict=True):
                for j, ej in zip(en.indices.tolist(), en.values.tolist(), strict=True):
                    if j < i or j - i + 1 > s.max_answer_tokens:
                        continue
                    c0, c1 = offsets[f][i][0], offsets[f][j][1]
                    if c1 <= c0:
                        continue
                    key = (chunk.doc_id, chunk.start + c0, chunk.start + c1)
                    logit = si + ej
                    if key not in best or best[key][0] < logit:
                        best[key] = (logit, c_idx, c0, c1)
        ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[: s.reader_n_best]
        fits = (
            self.typer.fits(question, [(chunks[c_idx], c0, c1) for _, (_, c_idx, c0, c1) in ranked])
            if self.typer is not None
            else [None] * len(ranked)
        )
        candidates = [
            ScoredSpan(doc_id=key[0], start=key[1], end=key[2], text=chunks[c_idx].text[c0:c1], logit=logit,
                       context=sentence_window(chunks[c_idx].text, c0, c1), fit=fit)
            for (key, (logit, c_idx, c0, c1)), fit in zip(ranked, fits, strict=True)
        ]
        return ScoredQuestion(candidates=candidates, min_null=min_null)
