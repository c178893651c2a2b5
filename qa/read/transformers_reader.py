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

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.calibration import Calibration, CalibrationError, sigmoid
from qa.chunk import sentence_around
from qa.errors import ModelUnavailable
from qa.ort import cpu_has_native_bf16, onnx_available
from qa.read import looks_like_path
from qa.read.answer_types import AnswerTyper
from qa.read.answerability import WordStats, WordStatsError, check_features, feature_values
from qa.settings import Settings
from qa.types import Chunk, Hit, Reading, Span

# Display window around a span (characters); context is for people, not for scoring.
CONTEXT_CHARS = 300


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
    null: float = 0.0  # the no-answer logit of the window the span was read in
    passage: str = ""  # the text of the chunk the span was read in (for the answerability features)
    passage_start: int = 0  # that chunk's offset in the article

    def adjusted(self, type_weight: float, passage_norm: bool = False) -> float:
        """The logit less ``type_weight`` times the misfit of the span's type; with ``passage_norm``,
        measured from its own window's no-answer logit (passages read apart are compared fairly)."""
        logit = self.logit - self.null if passage_norm else self.logit
        return logit if self.fit is None else logit - type_weight * (1.0 - self.fit)


@dataclass(frozen=True)
class ScoredQuestion:
    """Raw reader output for one question: candidates best first and the minimum null logit."""

    candidates: list[ScoredSpan]
    min_null: float


@dataclass(frozen=True)
class _Windows:
    """Tokenised question + context windows: model inputs, character offsets of each token in its
    chunk, the chunk each window came from, and which tokens are context."""

    feed: dict[str, np.ndarray]
    offsets: list[list[tuple[int, int]]]
    owner: list[int]
    context: np.ndarray


# The no-answer margin of an uncalibrated model when none is set (tuned for the first reader).
UNCALIBRATED_MARGIN = 3.0
METRICS = "metrics.json"  # what training tuned on validation: best_margin, best_type_weight


def model_defaults(folder: Path) -> dict[str, float]:
    """The reader settings tuned for the model in ``folder`` (its ``metrics.json``), which are the
    defaults of a setting the environment leaves unset: ``no_answer_margin`` (for an uncalibrated
    model) and ``reader_type_weight``. Empty when the file is missing or unreadable."""
    try:
        data = json.loads((folder / METRICS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out: dict[str, float] = {}
    for key, name in (("best_margin", "no_answer_margin"), ("best_type_weight", "reader_type_weight")):
        value = data.get(key) if isinstance(data, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


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



def sentence_window(text: str, start: int, end: int, cap: int = CONTEXT_CHARS) -> str:
    """The sentence(s) of ``text`` around ``text[start:end]`` (as citations cut them,
    :func:`qa.chunk.sentence_around`), at most ``cap`` characters."""
    lo, hi = sentence_around(text, start, end)
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

    def __init__(
        self, settings: Settings, typer: AnswerTyper | None = None, notify: Callable[[str], None] | None = None
    ) -> None:
        self.settings = settings
        self._tokenizer: Any = None  # torch backend: a transformers fast tokenizer
        self._model: Any = None  # torch backend: the model
        self._session: Any = None  # onnx backend: an ONNX Runtime session
        self._fast: Any = None  # onnx backend: a `tokenizers` tokenizer that cuts windows
        self._plain: Any = None  # onnx backend: the same, without truncation
        self._pad_id = 0
        self._inputs: list[str] = []
        self.notify = notify
        self.precision = "fp32"  # resolved from settings.reader_precision by load()
        self.calibration: Calibration | None = None  # the model folder's calibration.json, read by load()
        self.word_stats: WordStats | None = None  # word_stats.tsv.gz, read by load() when the calibration needs it
        # The model folder's tuned settings (metrics.json), the defaults of those left unset; read by load().
        self.model_defaults: dict[str, float] = {}
        # Answer typing re-ranks the n-best; off (no spaCy) when its weight is 0 and none is given.
        explicit_off = "reader_type_weight" in settings.model_fields_set and settings.reader_type_weight <= 0
        self.typer = typer if typer is not None or explicit_off else AnswerTyper()

    def load(self) -> None:
        """Load the tokenizer and model: an ONNX Runtime session on a cached export (``backend``
        onnx/auto), or the torch model (fp16 weights are cast to float32 for CPU)."""
        if self.typer is not None:
            self.typer.load()
        if self._model is not None or self._session is not None:
            return
        name = self.settings.reader_model
        hint = "set QA_READER_MODEL to a local model folder, or QA_READER=span to use the span reader"
        local = Path(name).expanduser()
        if local.exists():
            if not (local / "config.json").is_file():
                raise ModelUnavailable(f"reader model folder {local} has no config.json; {hint}")
        elif looks_like_path(name):
            raise ModelUnavailable(f"reader model folder {local} does not exist; {hint}")
        try:
            self.calibration = Calibration.load(local) if local.is_dir() else None
            if self.calibration is not None and self.calibration.extra:
                self.word_stats = WordStats.load(local)
                if self.word_stats is None:
                    raise ModelUnavailable(
                        f"{local / 'calibration.json'} weighs answerability features "
                        f"({', '.join(self.calibration.extra)}) but {local} has no word_stats.tsv.gz; "
                        "run `qa calibrate --word-stats TRAINING_DATA...` again, or delete calibration.json")
                check_features(self.calibration.extra)  # at load, not on the first question
        except (CalibrationError, WordStatsError, ValueError) as exc:
            raise ModelUnavailable(str(exc)) from exc
        self.model_defaults = model_defaults(local) if local.is_dir() else {}
        if self._use_onnx(local):
            self._load_onnx(local)
            return
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
        if self.settings.reader_precision == "int8":
            raise ModelUnavailable("QA_READER_PRECISION=int8 runs on ONNX Runtime; set QA_BACKEND=onnx (or auto)")
        self.precision = resolve_precision(self.settings.reader_precision)

    def _use_onnx(self, local: Path) -> bool:
        """onnx/torch as set; ``auto``: torch where it runs bf16 natively (faster warm) unless int8 or
        ``fast_start`` is asked for, ONNX Runtime elsewhere (faster than torch fp32, no torch import)."""
        backend = self.settings.backend
        if backend == "torch":
            return False
        warm_first = not self.settings.fast_start and self.settings.reader_precision in ("auto", "bf16")
        if backend == "auto" and warm_first and cpu_has_native_bf16():
            return False
        exportable = local.is_dir() and (local / "tokenizer.json").is_file()
        if backend == "onnx" and not exportable:
            raise ModelUnavailable(
                f"QA_BACKEND=onnx needs a local reader model folder with a tokenizer.json; {local} is not one"
            )
        return exportable and onnx_available()

    def _load_onnx(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        from qa.ort import cache_dir, onnx_model, open_session, quantized

        s = self.settings
        path = onnx_model(folder, "qa", cache_dir(s.onnx_cache_dir), self.notify)
        int8 = s.reader_precision == "int8"
        session = open_session(quantized(path) if int8 else path)
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=s.reader_max_length, stride=s.reader_stride, strategy="only_second")
        plain = Tokenizer.from_file(str(folder / "tokenizer.json"))
        plain.no_padding()
        plain.no_truncation()
        self._fast, self._plain = tokenizer, plain
        self._pad_id = tokenizer.token_to_id("[PAD]") or 0
        self._inputs = [i.name for i in session.get_inputs()]
        self.precision = "onnx int8" if int8 else "onnx fp32"
        self._session = session

    def read(self, question: str, hits: Sequence[Hit]) -> Reading:
        """Candidate spans for one question (wraps :meth:`read_batch`)."""
        return self.read_batch([question], [list(hits)])[0]

    @property
    def default_min_confidence(self) -> float | None:
        """The abstention threshold the model's calibration chose on validation (None: uncalibrated)."""
        return self.calibration.min_confidence if self.calibration is not None else None

    def confidence(self, x: float, question: str = "", span: ScoredSpan | None = None) -> float:
        """A span's score from ``x``, its (type-adjusted) logit over its passage's no-answer logit: the
        calibrated probability that it is right, or ``sigmoid(x - margin)`` for an uncalibrated model.
        A calibration with answerability features also reads ``question`` and the ``span``'s passage."""
        margin = self.settings.no_answer_margin
        cal = self.calibration
        if cal is not None:
            values: list[float] = []
            if cal.extra:
                if span is None or self.word_stats is None:
                    raise ValueError("this reader's calibration needs the question and the span's passage")
                values = feature_values(cal.extra, question, span.passage, span.start - span.passage_start,
                                        span.end - span.passage_start, self.word_stats)
            return cal.probability(x - (margin or 0.0), values)
        if margin is None:
            margin = self.model_defaults.get("no_answer_margin", UNCALIBRATED_MARGIN)
        return sigmoid(x - margin)

    @property
    def type_weight(self) -> float:
        """``QA_READER_TYPE_WEIGHT`` if set, else the weight the model's calibration was fitted
        with, else the one tuned for the model (metrics.json), else the settings' default."""
        if "reader_type_weight" in self.settings.model_fields_set:
            return self.settings.reader_type_weight
        if self.calibration is not None and isinstance(self.calibration.fitted_on.get("reader_type_weight"),
                                                       int | float):
            return float(self.calibration.fitted_on["reader_type_weight"])
        return self.model_defaults.get("reader_type_weight", self.settings.reader_type_weight)

    def read_batch(self, questions: Sequence[str], hits: Sequence[Sequence[Hit]]) -> list[Reading]:
        """Candidate spans, best first, with calibrated scores and a no-answer estimate."""
        weight = self.type_weight
        norm = self.settings.reader_passage_norm
        readings: list[Reading] = []
        for question, scored in zip(questions, self.score_batch(questions, hits), strict=True):
            if not scored.candidates:
                readings.append(Reading(spans=[], no_answer=1.0))
                continue
            # Against its own window's null logit (passage_norm), or the question's lowest null logit.
            base = 0.0 if norm else scored.min_null
            ranked = sorted(((c.adjusted(weight, norm) - base, c) for c in scored.candidates), key=lambda x: -x[0])
            spans = [
                Span(doc_id=c.doc_id, start=c.start, end=c.end, text=c.text,
                     score=self.confidence(rel, question, c), context=c.context)
                for rel, c in ranked
            ]
            # Best first by the score; answerability features can reorder the reader's ranking.
            spans.sort(key=lambda sp: -sp.score)
            readings.append(Reading(spans=spans, no_answer=1.0 - spans[0].score))
        return readings

    def score_batch(self, questions: Sequence[str], hits: Sequence[Sequence[Hit]]) -> list[ScoredQuestion]:
        """Raw logits per question: the ``reader_n_best`` best distinct spans and the minimum null logit."""
        if len(questions) != len(hits):
            raise ValueError(f"got {len(questions)} questions but {len(hits)} hit lists")
        if self._model is None and self._session is None:
            raise ModelUnavailable("the transformers reader is not loaded; call load() first")
        return [self._score_one(q, list(h)) for q, h in zip(questions, hits, strict=True)]

    def _question_for(self, question: str) -> str:
        """The question, cut so that every window still holds ``stride`` new context tokens."""
        s = self.settings
        limit = max(1, s.reader_max_length - s.reader_stride - 4)
        if self._session is not None:
            offsets = self._plain.encode(question, add_special_tokens=False).offsets
        else:
            offsets = self._tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return question if len(offsets) <= limit else question[: offsets[limit - 1][1]]

    def _windows(self, question: str, texts: list[str]) -> _Windows:
        """Question + context windows of ``max_length`` tokens (``stride`` tokens overlap), padded."""
        s = self.settings
        if self._session is None:
            enc = self._tokenizer(
                [question] * len(texts), texts, truncation="only_second", max_length=s.reader_max_length,
                stride=s.reader_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                padding="longest", return_tensors="np",
            )
            feed = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
            n = feed["input_ids"].shape[0]
            context = np.array([[sid == 1 for sid in enc.sequence_ids(f)] for f in range(n)], dtype=bool)
            return _Windows(feed, enc["offset_mapping"].tolist(), enc["overflow_to_sample_mapping"].tolist(), context)
        # The same windows as transformers' fast tokenizers cut (overflowing encodings, flattened).
        windows, owner = [], []
        for i, e in enumerate(self._fast.encode_batch([(question, t) for t in texts])):
            for w in (e, *e.overflowing):
                windows.append(w)
                owner.append(i)
        width = max(len(w.ids) for w in windows)

        def padded(rows: list[list[int]], fill: int) -> np.ndarray:
            return np.array([r + [fill] * (width - len(r)) for r in rows], dtype=np.int64)

        feed = {
            "input_ids": padded([w.ids for w in windows], self._pad_id),
            "attention_mask": padded([w.attention_mask for w in windows], 0),
            "token_type_ids": padded([w.type_ids for w in windows], 0),
        }
        context = np.array([[sid == 1 for sid in w.sequence_ids] + [False] * (width - len(w.ids)) for w in windows])
        offsets = [list(w.offsets) + [(0, 0)] * (width - len(w.ids)) for w in windows]
        return _Windows({k: feed[k] for k in self._inputs}, offsets, owner, context)

    def _widened(self, question: str, chunks: list[Chunk], ranked: list[_Entry]) -> list[_Entry]:
        assert self.typer is not None
        wide = self.typer.widen(question, [(chunks[c_idx], c0, c1) for _, (_, c_idx, c0, c1, _) in ranked])
        return _widen_entries(ranked, wide, chunks)

    def _logits(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits (float32) of every window, from whichever backend is loaded."""
        if self._session is not None:
            start, end = self._session.run(None, feed)
            return np.asarray(start, dtype=np.float32), np.asarray(end, dtype=np.float32)
        import torch

        inputs = {k: torch.from_numpy(v) for k, v in feed.items()}
        bf16 = self.precision == "bf16"
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = self._model(**inputs)
        return out.start_logits.float().numpy(), out.end_logits.float().numpy()

    def _score_one(self, question: str, hits: list[Hit]) -> ScoredQuestion:
        s = self.settings
        chunks = [h.chunk for h in hits]
        if not chunks or not question.strip():
            return ScoredQuestion(candidates=[], min_null=math.inf)
        q = self._question_for(question.strip())
        win = self._windows(q, [c.text for c in chunks])
        start_logits, end_logits = self._logits(win.feed)
        # (doc_id, article start, article end) -> (logit, chunk index, chunk start, chunk end, window null)
        best: dict[tuple[str, int, int], tuple[float, int, int, int, float]] = {}
        min_null = math.inf
        for f in range(start_logits.shape[0]):
            c_idx = win.owner[f]
            chunk = chunks[c_idx]
            in_ctx = win.context[f]
            null = float(start_logits[f, 0] + end_logits[f, 0])
            min_null = min(min_null, null)
            n_ctx = int(in_ctx.sum())
            if not n_ctx:
                continue
            k = min(s.reader_n_best, n_ctx)
            st = _top_k(np.where(in_ctx, start_logits[f], -np.inf), k)
            en = _top_k(np.where(in_ctx, end_logits[f], -np.inf), k)
            offsets = win.offsets[f]
            for i in st:
                si = float(start_logits[f, i])
                for j in en:
                    if j < i or j - i + 1 > s.max_answer_tokens:
                        continue
                    c0, c1 = offsets[i][0], offsets[j][1]
                    if c1 <= c0:
                        continue
                    key = (chunk.doc_id, chunk.start + c0, chunk.start + c1)
                    logit = si + float(end_logits[f, j])
                    if key not in best or best[key][0] < logit:
                        best[key] = (logit, c_idx, c0, c1, null)
        norm = s.reader_passage_norm
        ranked = sorted(best.items(), key=lambda kv: (kv[1][4] - kv[1][0] if norm else -kv[1][0], kv[0]))
        ranked = ranked[: s.reader_n_best]
        if s.reader_widen_entities and self.typer is not None:
            ranked = self._widened(question, chunks, ranked)
        fits = (
            self.typer.fits(question, [(chunks[c_idx], c0, c1) for _, (_, c_idx, c0, c1, _) in ranked])
            if self.typer is not None
            else [None] * len(ranked)
        )
        candidates = [
            ScoredSpan(doc_id=key[0], start=key[1], end=key[2], text=chunks[c_idx].text[c0:c1], logit=logit,
                       context=sentence_window(chunks[c_idx].text, c0, c1), fit=fit, null=null,
                       passage=chunks[c_idx].text, passage_start=chunks[c_idx].start)
            for (key, (logit, c_idx, c0, c1, null)), fit in zip(ranked, fits, strict=True)
        ]
        return ScoredQuestion(candidates=candidates, min_null=min_null)


_Entry = tuple[tuple[str, int, int], tuple[float, int, int, int, float]]


def _widen_entries(entries: list[_Entry], wide: list[tuple[int, int]], chunks: list[Chunk]) -> list[_Entry]:
    """Entries moved to their widened chunk offsets; where two land on one span, the first (best) stays."""
    out: dict[tuple[str, int, int], tuple[float, int, int, int, float]] = {}
    for ((doc_id, _, _), (logit, c_idx, _, _, null)), (w0, w1) in zip(entries, wide, strict=True):
        key = (doc_id, chunks[c_idx].start + w0, chunks[c_idx].start + w1)
        out.setdefault(key, (logit, c_idx, w0, w1, null))
    return list(out.items())


def _top_k(values: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` largest values, largest first (ties: lower index first)."""
    return [int(i) for i in np.argsort(-values, kind="stable")[:k]]
