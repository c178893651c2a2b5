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
    source: str | None = None  # the outlet ("Reuters"), where known
    url: str | None = None
    author: str | None = None

    def meta(self) -> dict[str, str | None]:
        """The metadata beyond title and date, as stored in the index and the journal."""
        return {"source": self.source, "url": self.url, "author": self.author}


@dataclass(frozen=True)
class Filters:
    """Which articles a question may be answered from: dated ``since``..``until`` (ISO dates,
    inclusive; an undated article is outside any date range), from ``source`` (case-insensitive),
    among ``doc_ids``. Applied inside retrieval, so the top-k is filled from matching articles."""

    since: str | None = None
    until: str | None = None
    source: str | None = None
    doc_ids: frozenset[str] | None = None

    @property
    def empty(self) -> bool:
        return self.since is None and self.until is None and self.source is None and self.doc_ids is None

    def matches(self, article: Article) -> bool:
        if self.doc_ids is not None and article.doc_id not in self.doc_ids:
            return False
        if self.source is not None and (article.source or "").casefold() != self.source.casefold():
            return False
        if self.since is not None or self.until is not None:
            if not article.date:
                return False
            day = article.date[:10]
            if (self.since is not None and day < self.since) or (self.until is not None and day > self.until):
                return False
        return True


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
    title: str | None = None  # the cited article's
    date: str | None = None
    source: str | None = None
    url: str | None = None
    # An answer that is a relative date ("on Monday") resolved against the article's date:
    # ``resolved_date`` for one day, ``resolved_start``/``resolved_end`` for a range ("next week").
    resolved_date: str | None = None
    resolved_start: str | None = None
    resolved_end: str | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"doc_id": self.doc_id, "start": self.start, "end": self.end, "text": self.text,
                                  "context": self.context, "context_start": self.start - self.context_start,
                                  "context_end": self.end - self.context_start, "title": self.title,
                                  "date": self.date, "source": self.source, "url": self.url}
        if self.resolved_date is not None or self.resolved_start is not None:
            out.update(resolved_date=self.resolved_date, resolved_start=self.resolved_start,
                       resolved_end=self.resolved_end)
        return out


@dataclass(frozen=True)
class Alternative:
    """One of the n best answers: its text, its probability of being right, its citations."""

    text: str
    score: float
    citations: list[Citation]


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
    # The n best answers when more than one was asked for (the first is the answer when one is given).
    alternatives: list[Alternative] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """The JSON answer object shared by ``ask --json``, the API and ``qa eval``."""
        return {
            "question": self.question,
            "answer": self.text,
            "score": round(float(self.score), 4),
            "citations": [c.to_dict() for c in self.citations],
            "retrieved": list(self.retrieved),
            "best_candidate": None if self.candidate is None else {
                "text": self.candidate.text, "doc_id": self.candidate.doc_id, "start": self.candidate.start,
                "end": self.candidate.end, "score": round(float(self.candidate.score), 4),
            },
            "min_confidence": None if self.min_confidence is None else round(float(self.min_confidence), 4),
            "latency_ms": round(float(self.latency_ms), 2),
            "n_best": [{"answer": a.text, "score": round(float(a.score), 4),
                        "citations": [c.to_dict() for c in a.citations]} for a in self.alternatives]
            if self.alternatives else None,
            "passages": [{"doc_id": h.chunk.doc_id, "start": h.chunk.start, "end": h.chunk.end, "text": h.chunk.text,
                          "score": round(float(h.score), 4)} for h in self.passages] if self.text is None else None,
        }


@dataclass(frozen=True)
class Reading:
    """What a reader found for one question: candidate spans best first, scores in 0..1.

    ``no_answer`` is the reader's own estimate (0..1) that the passages do not answer.
    """

    spans: list[Span]
    no_answer: float
