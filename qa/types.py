"""Plain, typed results that flow through the pipeline.

Every ``start``/``end`` pair is a character offset into the article text exactly as
decoded from its UTF-8 file, so ``article.text[start:end] == text`` always holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Article:
    """One article: its id, exact text and detected metadata."""

    doc_id: str
    text: str
    title: str
    date: str | None
    sha256: str
    path: str = ""


@dataclass(frozen=True)
class Chunk:
    """A passage of an article: ``text == article.text[start:end]``."""

    doc_id: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its fused score and the dense cosine similarity."""

    chunk: Chunk
    score: float
    dense: float = 0.0
    rank: int = 0


@dataclass(frozen=True)
class Span:
    """A candidate answer span with a calibrated score in 0..1.

    ``context`` is the sentence (or short window) around the span, for display.
    """

    doc_id: str
    start: int
    end: int
    text: str
    score: float
    context: str = ""


@dataclass(frozen=True)
class Citation:
    """Where an answer stands in an article."""

    doc_id: str
    start: int
    end: int
    text: str
    context: str
    context_start: int = 0  # article offset of ``context``; the answer sits at start - context_start


@dataclass
class Answer:
    """The answer to one question: ``text`` is None when the articles do not answer it."""

    question: str
    text: str | None
    score: float
    citations: list[Citation] = field(default_factory=list)
    retrieved: list[str] = field(default_factory=list)
    passages: list[Hit] = field(default_factory=list)
    latency_ms: float = 0.0
    # The best candidate when the answer is withheld (``text`` None): its text and where it was read.
    candidate: Span | None = None
    # The confidence below which the answer was withheld (the min_confidence in force).
    min_confidence: float | None = None
    # Per-question milliseconds by stage (embed, retrieve, read, assemble); not part of the JSON.
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """The JSON answer object shared by ``ask --json``, the API and ``qa eval``."""
        return {
            "question": self.question,
            "answer": self.text,
            "score": round(float(self.score), 4),
            "citations": [
                {"doc_id": c.doc_id, "start": c.start, "end": c.end, "text": c.text, "context": c.context}
                for c in self.citations
            ],
            "retrieved": list(self.retrieved),
            "best_candidate": None if self.candidate is None else {
                "text": self.candidate.text, "doc_id": self.candidate.doc_id, "start": self.candidate.start,
                "end": self.candidate.end, "score": round(float(self.candidate.score), 4),
            },
            "min_confidence": None if self.min_confidence is None else round(float(self.min_confidence), 4),
            "latency_ms": round(float(self.latency_ms), 2),
        }


@dataclass(frozen=True)
class Reading:
    """What a reader found for one question: candidate spans best first, scores in 0..1.

    ``no_answer`` is the reader's own estimate (0..1) that the passages do not answer.
    """

    spans: list[Span]
    no_answer: float
