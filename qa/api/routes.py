"""Endpoints: parse the request, call the service, shape the response. No question answering here."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.convertors import Convertor, register_url_convertor

from qa.api.errors import ApiError
from qa.api.schemas import (
    TOP_K_MAX,
    TOP_K_MIN,
    AnswerOut,
    AskBatchRequest,
    AskRequest,
    BatchAnswersOut,
    DocumentDeleted,
    DocumentIn,
    DocumentList,
    DocumentOut,
    DocumentPut,
    DocumentSummary,
    DocumentWritten,
    ErrorOut,
    FiltersIn,
    HealthOut,
    ReaderName,
    ReadyOut,
    SearchOut,
    SearchRequest,
    Text,
)
from qa.api.service import Service
from qa.pipeline import make_filters
from qa.types import Filters

router = APIRouter()


class _AnyText(Convertor[str]):
    """Any non-empty path remainder, newlines and slashes included, so that a bad doc_id reaches
    validation (a clear 422) instead of falling through to "no such endpoint"."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("any_text", _AnyText())


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]
_bearer = HTTPBearer(auto_error=False, description="the server's QA_API_TOKEN")


def require_writer(
    service: ServiceDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Write endpoints: bearer token when QA_API_TOKEN is set; without one, a loopback bind only."""
    service.authorize_write(credentials.credentials if credentials is not None else None)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "the body is not valid JSON",
        401: "missing or wrong bearer token",
        403: "writes are disabled (no QA_API_TOKEN on a public bind, or several workers)",
        404: "no article with that doc_id",
        409: "the last article of the index cannot be deleted",
        412: "If-Match does not name the article's current sha256",
        413: "the body or the article text is over its limit",
        422: "invalid input (empty or over-long question, top_k out of range, unknown reader, bad doc_id, a date "
             "that is not one, ...), or a page or URL that holds no article (not_ingestible)",
        503: "still loading, busy, or the index or a model is unavailable",
        507: "the server's disk is full; the write was not applied",
    }
    return {s: {"model": ErrorOut, "description": descriptions[s]} for s in statuses}


_IF_MATCH = ("write only if the article is still this version: its sha256 (the ETag of GET /documents/{doc_id}), "
             "or * for 'it must exist'; 412 otherwise")

# ---------------------------------------------------------------- questions
def _filters(f: FiltersIn | None) -> Filters | None:
    """The core's filters (422 for a date that is not one)."""
    return None if f is None else make_filters(f.since, f.until, f.source, f.doc_ids)


@router.post("/ask", response_model=AnswerOut, tags=["questions"], responses=_errors(400, 413, 422, 503),
             summary="Answer one question with citations")
async def ask(body: AskRequest, service: ServiceDep) -> AnswerOut:
    """The same JSON object as ``ask --json``; ``answer`` is null when the articles do not answer."""
    return AnswerOut.of(await service.ask(body.question, body.top_k, body.reader, _filters(body.filters),
                                          body.n_best))


@router.get("/ask", response_model=AnswerOut, tags=["questions"], responses=_errors(422, 503),
            summary="Answer one question (query string)")
async def ask_get(
    service: ServiceDep,
    q: Annotated[Text | None, Query(description="the question (or `question`, as in POST)",
                                    examples=["Who is Russia's lead negotiator?"])] = None,
    question: Annotated[Text | None, Query(description="the question, the name POST /ask uses",
                                           examples=["Who is Russia's lead negotiator?"])] = None,
    top_k: Annotated[int | None, Query(ge=TOP_K_MIN, le=TOP_K_MAX, description="passages the reader sees",
                                       examples=[5])] = None,
    reader: Annotated[ReaderName | None, Query(description="auto, span or transformers", examples=["span"])] = None,
    n_best: Annotated[int, Query(ge=1, le=10, description="the best n answers too", examples=[3])] = 1,
) -> AnswerOut:
    """Like ``POST /ask``, for a browser or ``curl 'localhost:8000/ask?q=...'``; takes the same names."""
    if (q is None) == (question is None):
        raise ApiError(422, "invalid_request", "give the question as q or as question (one of them)")
    return AnswerOut.of(await service.ask(q if q is not None else question or "", top_k, reader, None, n_best))


@router.post("/ask/batch", response_model=BatchAnswersOut, tags=["questions"],
             responses=_errors(400, 413, 422, 503), summary="Answer several questions in one batched pass")
async def ask_batch(body: AskBatchRequest, service: ServiceDep) -> BatchAnswersOut:
    """Answers in the order of the questions; one invalid question rejects the whole batch."""
    answers = await service.ask_batch(body.questions, body.top_k, body.reader, _filters(body.filters))
    return BatchAnswersOut(answers=[AnswerOut.of(a) for a in answers])


@router.post("/search", response_model=SearchOut, tags=["questions"], responses=_errors(400, 413, 422, 503),
             summary="Retrieve passages for a question, without reading them")
async def search(body: SearchRequest, service: ServiceDep) -> SearchOut:
    """What `qa search` prints: the passages the reader would see, best first."""
    return await service.search(body.question, body.k, _filters(body.filters))


@router.get("/search", response_model=SearchOut, tags=["questions"], responses=_errors(422, 503),
            summary="Retrieve passages (query string)")
async def search_get(
    service: ServiceDep,
    q: Annotated[Text, Query(description="the question", examples=["Who is Russia's lead negotiator?"])],
    k: Annotated[int, Query(ge=TOP_K_MIN, le=TOP_K_MAX, description="passages to return", examples=[5])] = 5,
) -> SearchOut:
    return await service.search(q, k, None)


# ---------------------------------------------------------------- documents
@router.get("/documents", response_model=DocumentList, tags=["documents"], responses=_errors(422, 503),
            summary="List the articles in the index")
async def list_documents(
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=10_000, description="articles per page", examples=[100])] = 1000,
    cursor: Annotated[Text | None, Query(description="the next_cursor of the previous page",
                                         examples=["002_2b81b22c40bf866c"])] = None,
) -> DocumentList:
    """Articles by doc_id, a page at a time: follow ``next_cursor`` until it is null."""
    page, next_cursor, total = await service.document_page(limit, cursor)
    return DocumentList(documents=[DocumentSummary.of(a) for a in page], count=total, next_cursor=next_cursor)


@router.get("/documents/{doc_id:any_text}", response_model=DocumentOut, tags=["documents"],
            responses=_errors(404, 422, 503), summary="One article with its exact text")
async def get_document(doc_id: str, service: ServiceDep, response: Response) -> DocumentOut:
    """Citation offsets index into ``text``; the ETag is the article's sha256 (for If-Match)."""
    article = service.document(doc_id)
    response.headers["ETag"] = f'"{article.sha256}"'
    return DocumentOut.of(article)


@router.post("/documents", response_model=DocumentWritten, status_code=201, tags=["documents"],
             dependencies=[Depends(require_writer)],
             responses={200: {"model": DocumentWritten, "description": "an existing article was replaced"},
                        **_errors(400, 401, 403, 412, 413, 422, 503, 507)},
             summary="Add an article (201) or replace one (200)")
async def add_document(body: DocumentIn, service: ServiceDep, response: Response,
                       if_match: Annotated[str | None, Header(description=_IF_MATCH)] = None) -> DocumentWritten:
    """The article is on disk (fsynced) before this answers, and searchable in the index."""
    return await _write(body.doc_id, body, service, response, if_match)


@router.put("/documents/{doc_id:any_text}", response_model=DocumentWritten, status_code=201, tags=["documents"],
            dependencies=[Depends(require_writer)],
            responses={200: {"model": DocumentWritten, "description": "an existing article was replaced"},
                       **_errors(400, 401, 403, 412, 413, 422, 503, 507)},
            summary="Write the article at this doc_id (idempotent)")
async def put_document(doc_id: str, body: DocumentPut, service: ServiceDep, response: Response,
                       if_match: Annotated[str | None, Header(description=_IF_MATCH)] = None) -> DocumentWritten:
    """The same write as POST at a known id: sending it twice leaves one article, as after once."""
    return await _write(doc_id, body, service, response, if_match)


async def _write(doc_id: str, body: DocumentPut, service: Service, response: Response,
                 if_match: str | None) -> DocumentWritten:
    meta = {"title": body.title, "date": body.date, "source": body.source, "url": body.url, "author": body.author}
    if body.text is not None and body.html is None and all(v is None for k, v in meta.items() if k != "title"):
        article, replaced = await service.add_document(doc_id, body.text, body.title, if_match)
    else:
        article, replaced = await service.add_converted(doc_id, body.text, body.html, meta, if_match)
    if replaced:
        response.status_code = 200
    response.headers["ETag"] = f'"{article.sha256}"'
    documents, chunks = service.counts()
    return DocumentWritten(doc_id=article.doc_id, title=article.title, date=article.date, source=article.source,
                           url=article.url, author=article.author, chars=len(article.text), sha256=article.sha256,
                           replaced=replaced, documents=documents, chunks=chunks)


@router.delete("/documents/{doc_id:any_text}", response_model=DocumentDeleted, tags=["documents"],
               dependencies=[Depends(require_writer)], responses=_errors(401, 403, 404, 409, 422, 503, 507),
               summary="Delete an article")
async def delete_document(doc_id: str, service: ServiceDep) -> DocumentDeleted:
    await service.delete_document(doc_id)
    documents, chunks = service.counts()
    return DocumentDeleted(doc_id=doc_id, deleted=True, documents=documents, chunks=chunks)


# ---------------------------------------------------------------- health
@router.get("/healthz", response_model=HealthOut, tags=["health"], summary="Liveness: the process answers")
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@router.get("/readyz", response_model=ReadyOut, tags=["health"],
            responses={503: {"model": ReadyOut, "description": "loading, or the load failed"}},
            summary="Readiness: models and index loaded")
async def readyz(service: ServiceDep) -> Any:
    if service.status != "ready" or service.pipeline.index is None:
        message = ("loading models and the index" if service.status == "loading"
                   else "loading failed; the server log says why")
        body = ReadyOut(ready=False, status=service.status, message=message)
        return JSONResponse(body.model_dump(), status_code=503,
                            headers={"Retry-After": str(service.api.retry_after_s)})
    idx = service.pipeline.index
    return ReadyOut(ready=True, status="ready", documents=len(idx.articles), chunks=idx.n_chunks,
                    embed_model=idx.base_manifest.embed_model, reader=service.pipeline.reader.name)
