"""Request and response bodies of the HTTP API (pydantic lives only at this edge).

Response models mirror the core's plain results: :class:`AnswerOut` is exactly
:meth:`qa.types.Answer.to_dict`, the object ``ask --json`` prints.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from annotated_types import Ge, Le
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt
from pydantic.config import JsonDict

from qa.settings import Settings
from qa.types import Answer, Article


def _settings_bounds(name: str) -> tuple[int, int]:
    """The ``ge``/``le`` bounds a :class:`Settings` field declares, so the API accepts the same range."""
    lo = hi = None
    for m in Settings.model_fields[name].metadata:
        if isinstance(m, Ge):
            lo = int(m.ge)  # type: ignore[call-overload]
        elif isinstance(m, Le):
            hi = int(m.le)  # type: ignore[call-overload]
    if lo is None or hi is None:
        raise RuntimeError(f"Settings.{name} declares no ge/le bounds")
    return lo, hi


TOP_K_MIN, TOP_K_MAX = _settings_bounds("top_k")

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _valid_unicode(v: str) -> str:
    # JSON may escape lone surrogates ("\ud800"); such a string cannot be written as UTF-8.
    if _SURROGATE.search(v):
        raise ValueError("contains a lone UTF-16 surrogate; send valid Unicode text")
    return v


def _valid_title(v: str) -> str:
    if _CONTROL.search(v):
        raise ValueError("must not contain control characters")
    return v


Text = Annotated[str, AfterValidator(_valid_unicode)]
Title = Annotated[str, AfterValidator(_valid_unicode), AfterValidator(_valid_title)]
ReaderName = Literal["auto", "span", "transformers"]

_QUESTION = "Who is Russia's lead negotiator?"
_TOP_K_DESC = f"passages the reader sees, {TOP_K_MIN}..{TOP_K_MAX} (default: the server's QA_TOP_K)"
_READER_DESC = "which reader answers: auto (the server's default), span or transformers"


# ---------------------------------------------------------------- requests
class _Request(BaseModel):
    """Unknown fields are refused (a typo such as ``topk`` is a 422, not silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class FiltersIn(_Request):
    """Which articles may answer: applied inside retrieval, so the top-k fills from them."""

    since: Text | None = Field(default=None, description="articles dated on or after this day (YYYY-MM-DD)")
    until: Text | None = Field(default=None, description="articles dated on or before this day (YYYY-MM-DD)")
    source: Text | None = Field(default=None, description="articles from this outlet (case-insensitive)")
    doc_ids: list[Text] | None = Field(default=None, max_length=10_000, description="only these articles")


class AskRequest(_Request):
    """One question."""

    question: Text = Field(description="the question; at most QA_MAX_QUESTION_CHARS characters")
    top_k: StrictInt | None = Field(default=None, ge=TOP_K_MIN, le=TOP_K_MAX, description=_TOP_K_DESC)
    reader: ReaderName | None = Field(default=None, description=_READER_DESC)
    filters: FiltersIn | None = Field(default=None, description="answer only from these articles")
    n_best: StrictInt = Field(default=1, ge=1, le=10, description="with more than 1: the best n answers too, each "
                              "with its probability and citations, in n_best")

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"question": _QUESTION}, {"question": _QUESTION, "top_k": 3, "reader": "span"},
                                        {"question": _QUESTION, "n_best": 3}]}
    )


class SearchRequest(_Request):
    """Retrieval only: the passages a question would be read from, best first."""

    question: Text = Field(description="the question; at most QA_MAX_QUESTION_CHARS characters")
    k: StrictInt = Field(default=5, ge=TOP_K_MIN, le=TOP_K_MAX, description="passages to return")
    filters: FiltersIn | None = Field(default=None, description="search only these articles")

    model_config = ConfigDict(json_schema_extra={"examples": [{"question": _QUESTION, "k": 5}]})


class AskBatchRequest(_Request):
    """Several questions answered in one batched pass, in order."""

    questions: list[Text] = Field(min_length=1, description="the questions; at most QA_MAX_BATCH_QUESTIONS")
    top_k: StrictInt | None = Field(default=None, ge=TOP_K_MIN, le=TOP_K_MAX, description=_TOP_K_DESC)
    reader: ReaderName | None = Field(default=None, description=_READER_DESC)
    filters: FiltersIn | None = Field(default=None, description="answer only from these articles")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"questions": [_QUESTION, "When was the second Istanbul round?"], "top_k": 5}]
        }
    )


class DocumentPut(_Request):
    """The article for PUT /documents/{doc_id}: its ``text``, or a news page's ``html``, or only a
    ``url`` to fetch, with optional metadata."""

    text: Text | None = Field(default=None, description="the article text, kept exactly; at most "
                              "QA_MAX_DOCUMENT_CHARS characters")
    html: Text | None = Field(default=None, description="a news page instead of text: its main text and metadata "
                              "are extracted (trafilatura); the extracted text is the article")
    title: Title | None = Field(default=None, description="the headline, kept as the article's metadata: the "
                                "stored text is exactly `text` (or the page's), so citation offsets index it")
    date: Text | None = Field(default=None, description="the article's date (YYYY-MM-DD, or any form of a date)")
    source: Text | None = Field(default=None, description="the outlet")
    url: Text | None = Field(default=None, description="where it was published; alone (no text or html): the "
                             "address to fetch it from")
    author: Text | None = Field(default=None, description="the author")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "title": "Zanzibar summit opens",
                    "text": "The Zanzibar summit opened on 3 March 2031 in Stone Town, the negotiators said.",
                }
            ]
        }
    )



class DocumentIn(DocumentPut):
    """An article to add, or to replace when ``doc_id`` exists: its ``text``, or a news page's
    ``html`` (its main text is extracted), or only a ``url`` to fetch (a page or a PDF)."""

    doc_id: Text = Field(description="letters, digits, '.', '-' and '_'; no path separators or '..'")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "doc_id": "zanzibar-summit",
                    "title": "Zanzibar summit opens",
                    "text": "The Zanzibar summit opened on 3 March 2031 in Stone Town, the negotiators said.",
                }
            ]
        }
    )


class BulkDocument(DocumentIn):
    """One article of a bulk write: the fields of POST /documents, and its own If-Match."""

    if_match: Text | None = Field(default=None, description="as the If-Match header of POST /documents: write only "
                                  "if the article is still this version (its sha256), or * for 'it must exist'")


class BulkRequest(_Request):
    """Articles to add or replace, written in order (a doc_id given twice: the later one wins)."""

    documents: list[BulkDocument] = Field(min_length=1, description="at most QA_MAX_BULK_DOCUMENTS")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "documents": [
                        {"doc_id": "zanzibar-summit", "title": "Zanzibar summit opens",
                         "text": "The Zanzibar summit opened on 3 March 2031 in Stone Town, the negotiators said."},
                        {"doc_id": "pemba-ferry", "text": "The ferry to Pemba reopened on 4 March 2031.",
                         "source": "Harbour Gazette", "date": "2031-03-04"},
                    ]
                }
            ]
        }
    )


# ---------------------------------------------------------------- responses
class CitationOut(BaseModel):
    """Where the answer stands: ``article.text[start:end] == text``."""

    doc_id: str
    start: int
    end: int
    text: str
    context: str = Field(description="the sentence around the cited span")
    context_start: int = Field(description="where the answer starts in context: context[context_start:context_end] "
                               "== text (characters, i.e. Unicode code points)")
    context_end: int = Field(description="where the answer ends in context")
    title: str | None = Field(default=None, description="the cited article's headline")
    date: str | None = Field(default=None, description="the cited article's date (ISO 8601)")
    source: str | None = Field(default=None, description="the outlet the article comes from")
    url: str | None = Field(default=None, description="where the article was published")
    resolved_date: str | None = Field(
        default=None, description="when the cited span is a relative date ('on Monday'): the day it stands for, "
        "resolved against the article's date (ISO 8601)")
    resolved_start: str | None = Field(default=None, description="for a relative range ('next week'): its first day")
    resolved_end: str | None = Field(default=None, description="for a relative range: its last day")


_ANSWER_EXAMPLE: JsonDict = {
    "question": _QUESTION,
    "answer": "Vladimir Medinsky",
    "score": 0.9655,
    "citations": [
        {
            "doc_id": "003_56e07843aefd4aea",
            "start": 613,
            "end": 630,
            "text": "Vladimir Medinsky",
            "context": "Russia’s lead negotiator, Vladimir Medinsky, confirmed receipt of Ukraine’s draft proposal "
            "for a ceasefire framework.",
            "context_start": 26,
            "context_end": 43,
        }
    ],
    "retrieved": ["003_56e07843aefd4aea", "002_2b81b22c40bf866c", "001_a191f6331583f074"],
    "best_candidate": None,
    "min_confidence": 0.4,
    "latency_ms": 631.36,
}


ANSWER_EXAMPLE = _ANSWER_EXAMPLE  # also the example line of the NDJSON stream


class PassageOut(BaseModel):
    """A retrieved passage: ``article.text[start:end] == text``."""

    doc_id: str
    start: int
    end: int
    text: str
    score: float = Field(description="the fused (reciprocal rank) retrieval score")
    cosine: float = Field(description="cosine similarity of question and passage")
    title: str | None = None
    date: str | None = None
    source: str | None = None
    url: str | None = None


class SearchOut(BaseModel):
    """Passages best first."""

    question: str
    passages: list[PassageOut]

    model_config = ConfigDict(json_schema_extra={"examples": [{"question": _QUESTION, "passages": [{
        "doc_id": "003_56e07843aefd4aea", "start": 587, "end": 731,
        "text": "Russia’s lead negotiator, Vladimir Medinsky, confirmed receipt of Ukraine’s draft proposal for a "
        "ceasefire framework.", "score": 0.0328, "cosine": 0.61, "title": None, "date": "2025-06-02",
        "source": None, "url": None}]}]})


class CandidateOut(BaseModel):
    """The best candidate of a withheld answer: too unlikely to be right to be given as the answer."""

    text: str
    doc_id: str
    start: int
    end: int
    score: float = Field(description="the probability that this candidate is right")


class AlternativeOut(BaseModel):
    """One of the n best answers."""

    answer: str
    score: float = Field(description="the probability that this answer is right")
    citations: list[CitationOut]


class PassageReadOut(BaseModel):
    """A passage the reader read, on an answer withheld: ``article.text[start:end] == text``."""

    doc_id: str
    start: int
    end: int
    text: str
    score: float = Field(description="the fused retrieval score")


class AnswerOut(BaseModel):
    """The answer object shared with ``ask --json``: ``answer`` is null when the articles do not answer."""

    question: str
    answer: str | None
    score: float = Field(
        description="the probability (0..1) that the answer is right, calibrated on held-out questions; for a "
        "withheld answer, that of its best candidate"
    )
    citations: list[CitationOut]
    retrieved: list[str] = Field(description="doc_ids of the retrieved passages, best first")
    best_candidate: CandidateOut | None = Field(
        default=None, description="when the answer is withheld: the best candidate and where it was read"
    )
    min_confidence: float | None = Field(
        default=None, description="answers less likely than this to be right are withheld (QA_MIN_CONFIDENCE)"
    )
    latency_ms: float
    n_best: list[AlternativeOut] | None = Field(default=None, description="the best n answers, when n_best > 1 "
                                                "was asked for (the first is the answer, if one is given)")
    passages: list[PassageReadOut] | None = Field(default=None, description="when the answer is withheld: the "
                                                  "passages that were read, best first")

    model_config = ConfigDict(json_schema_extra={"examples": [_ANSWER_EXAMPLE]})

    @classmethod
    def of(cls, answer: Answer) -> AnswerOut:
        return cls.model_validate(answer.to_dict())


class BatchAnswersOut(BaseModel):
    """Answers in the order of the questions."""

    answers: list[AnswerOut]

    model_config = ConfigDict(json_schema_extra={"examples": [{"answers": [_ANSWER_EXAMPLE]}]})


_SUMMARY_EXAMPLE: JsonDict = {
    "doc_id": "003_56e07843aefd4aea",
    "title": "Russia Rejects ‘Unconditional Ceasefire’ With Ukraine As Istanbul Peace Talks End",
    "date": None,
    "source": None,
    "url": None,
    "author": None,
    "chars": 3521,
}


class DocumentSummary(BaseModel):
    """One article in the index, without its text."""

    doc_id: str
    title: str
    date: str | None = Field(description="the article's date (ISO 8601): from its metadata, else the first ISO "
                             "date it states")
    source: str | None = Field(default=None, description="the outlet, where known")
    url: str | None = Field(default=None, description="where it was published, where known")
    author: str | None = Field(default=None, description="the author, where known")
    chars: int = Field(description="length of the text in characters")

    model_config = ConfigDict(json_schema_extra={"examples": [_SUMMARY_EXAMPLE]})

    @classmethod
    def of(cls, a: Article) -> DocumentSummary:
        return cls(doc_id=a.doc_id, title=a.title, date=a.date, source=a.source, url=a.url, author=a.author,
                   chars=len(a.text))


class DocumentList(BaseModel):
    """One page of the articles in the index, by doc_id."""

    documents: list[DocumentSummary]
    count: int = Field(description="articles in the index (all pages)")
    next_cursor: str | None = Field(default=None, description="pass as ?cursor= for the next page; null on the last")

    model_config = ConfigDict(json_schema_extra={"examples": [{"documents": [_SUMMARY_EXAMPLE], "count": 1,
                                                               "next_cursor": None}]})


class DocumentOut(DocumentSummary):
    """One article with its exact text (citation offsets index into ``text``)."""

    sha256: str
    text: str

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "doc_id": "zanzibar-summit",
                    "title": "Zanzibar summit opens",
                    "date": None,
                    "chars": 79,
                    "sha256": "5f6c4aa81f132bbefae36a79588cf6af1acabeaa6a72cc0e809f4169fe3d6f69",
                    "text": "The Zanzibar summit opened on 3 March 2031 in Stone Town, the negotiators said.",
                }
            ]
        }
    )

    @classmethod
    def of(cls, a: Article) -> DocumentOut:
        return cls(doc_id=a.doc_id, title=a.title, date=a.date, source=a.source, url=a.url, author=a.author,
                   chars=len(a.text), sha256=a.sha256, text=a.text)


class DocumentWritten(DocumentSummary):
    """The stored article after POST /documents; ``replaced`` says whether it existed."""

    sha256: str
    replaced: bool
    documents: int = Field(description="articles in the index now")
    chunks: int = Field(description="chunks in the index now")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "doc_id": "zanzibar-summit",
                    "title": "Zanzibar summit opens",
                    "date": None,
                    "chars": 79,
                    "sha256": "5f6c4aa81f132bbefae36a79588cf6af1acabeaa6a72cc0e809f4169fe3d6f69",
                    "replaced": False,
                    "documents": 6,
                    "chunks": 23,
                }
            ]
        }
    )


class BulkItemOut(BaseModel):
    """What became of one article of a bulk write (``index`` is its place in the request)."""

    index: int
    doc_id: str
    status: Literal["written", "error"]
    http_status: int = Field(description="what POST /documents would have answered for this article alone: 201 "
                             "added, 200 replaced, or the error's status")
    replaced: bool | None = Field(default=None, description="written: whether it replaced an article")
    sha256: str | None = Field(default=None, description="written: the article's sha256 (its ETag)")
    chars: int | None = Field(default=None, description="written: length of the stored text in characters")
    error: ErrorDetail | None = Field(default=None, description="error: why this article was not written "
                                      "(nothing of it was)")


class BulkOut(BaseModel):
    """Every article of a bulk write, in request order; ``written`` ones are on disk and searchable."""

    results: list[BulkItemOut]
    written: int = Field(description="articles written")
    failed: int = Field(description="articles not written (each with its error)")
    documents: int = Field(description="articles in the index now")
    chunks: int = Field(description="chunks in the index now")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        {"index": 0, "doc_id": "zanzibar-summit", "status": "written", "http_status": 201,
                         "replaced": False, "chars": 79, "error": None,
                         "sha256": "5f6c4aa81f132bbefae36a79588cf6af1acabeaa6a72cc0e809f4169fe3d6f69"},
                        {"index": 1, "doc_id": "../etc", "status": "error", "http_status": 422, "replaced": None,
                         "sha256": None, "chars": None,
                         "error": {"code": "invalid_document", "message": "doc_id may contain only letters, digits, "
                                   "'.', '-' and '_' (no path separators, '..' or control characters), got '../etc'"}},
                    ],
                    "written": 1, "failed": 1, "documents": 6, "chunks": 23,
                }
            ]
        }
    )


class DocumentDeleted(BaseModel):
    """What DELETE /documents/{doc_id} removed."""

    doc_id: str
    deleted: bool
    documents: int = Field(description="articles in the index now")
    chunks: int = Field(description="chunks in the index now")

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"doc_id": "zanzibar-summit", "deleted": True, "documents": 5, "chunks": 22}]}
    )


class HealthOut(BaseModel):
    """Liveness: the process answers."""

    status: Literal["ok"]

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})


class ReadyOut(BaseModel):
    """Readiness: models and index loaded and the store answering (503 with ``ready: false`` while
    loading, after a failed load, while the store cannot be reached, or while a shared store holds no
    index yet: ``store_empty``)."""

    ready: bool
    status: Literal["loading", "ready", "failed", "store_unavailable", "store_empty"]
    documents: int | None = None
    chunks: int | None = None
    embed_model: str | None = None
    reader: str | None = None
    message: str | None = Field(default=None, description="why the service is not ready")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ready": True,
                    "status": "ready",
                    "documents": 5,
                    "chunks": 22,
                    "embed_model": "sentence-transformers/all-MiniLM-L6-v2",
                    "reader": "span",
                    "message": None,
                },
                {"ready": False, "status": "loading", "message": "loading models and the index"},
            ]
        }
    )


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable: invalid_question, document_not_found, ...")
    message: str = Field(description="one line that says what went wrong and what to do")


class ErrorOut(BaseModel):
    """Every 4xx/5xx answer has this shape."""

    error: ErrorDetail

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"error": {"code": "invalid_question", "message": "the question is empty; ask something, e.g. "
                           "\"When was the second Istanbul round?\""}}
            ]
        }
    )
