"""Endpoints: parse the request, call the service, shape the response. No question answering here."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.convertors import Convertor, register_url_convertor

from qa.api.errors import ApiError, error_parts
from qa.api.schemas import (
    ANSWER_EXAMPLE,
    TOP_K_MAX,
    TOP_K_MIN,
    AnswerOut,
    AskBatchRequest,
    AskRequest,
    BatchAnswersOut,
    BulkItemOut,
    BulkOut,
    BulkRequest,
    DocumentDeleted,
    DocumentIn,
    DocumentList,
    DocumentOut,
    DocumentPut,
    DocumentSummary,
    DocumentWritten,
    ErrorDetail,
    ErrorOut,
    HealthOut,
    ReaderName,
    ReadyOut,
    SearchOut,
    SearchRequest,
    Text,
)
from qa.api.service import Service, Written
from qa.errors import StoreUnavailable
from qa.types import Answer

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
        403: "writes are disabled (no QA_API_TOKEN on a public bind, or several workers on a local index)",
        404: "no article with that doc_id",
        409: "the last article of the index cannot be deleted",
        412: "If-Match does not name the article's current sha256",
        413: "the body or the article text is over its limit",
        422: "invalid input (empty or over-long question, top_k out of range, unknown reader, bad doc_id, a date "
             "that is not one, ...), or a page or URL that holds no article (not_ingestible)",
        503: "still loading, busy, the index or a model is unavailable, or the store cannot be reached "
             "(store_unavailable)",
        507: "the server's disk is full; the write was not applied",
    }
    return {s: {"model": ErrorOut, "description": descriptions[s]} for s in statuses}


_IF_MATCH = ("write only if the article is still this version: its sha256 (the ETag of GET /documents/{doc_id}), "
             "or * for 'it must exist'; 412 otherwise")

# ---------------------------------------------------------------- questions
@router.post("/ask", response_model=AnswerOut, tags=["questions"], responses=_errors(400, 413, 422, 503),
             summary="Answer one question with citations")
async def ask(body: AskRequest, service: ServiceDep) -> AnswerOut:
    """The same JSON object as ``ask --json``; ``answer`` is null when the articles do not answer."""
    return AnswerOut.of(await service.ask(body.question, body.top_k, body.reader, body.filters, body.n_best))


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


NDJSON = "application/x-ndjson"


def _wants_ndjson(accept: str | None) -> bool:
    """Whether the Accept header lists application/x-ndjson (and not with q=0, "not acceptable")."""
    for part in (accept or "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media.lower() == NDJSON:
            q = next((p.split("=", 1)[1].strip() for p in params if p.lower().startswith("q=")), "1")
            try:
                return float(q) > 0
            except ValueError:
                return True
    return False


async def _ndjson_lines(answers: AsyncGenerator[Answer, None]) -> AsyncIterator[bytes]:
    """One JSON object a line; a failure midway ends the stream with an error line."""
    try:
        async for answer in answers:
            yield _line(AnswerOut.of(answer).model_dump(mode="json"))
    except Exception as e:  # the status line (200) has gone out: the error can only be a line
        _, code, message, _ = error_parts(e, "POST /ask/batch (stream)")
        yield _line({"error": {"code": code, "message": message}})
    finally:
        await answers.aclose()  # releases the batch's question slot


def _line(obj: object) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")


_STREAM_DESCRIPTION = (
    "With `Accept: application/x-ndjson`: one `AnswerOut` JSON object a line, in the order of the questions, "
    "each sent as soon as it is answered; a failure after the first line ends the stream with a line "
    '`{"error": {"code", "message"}}`.')


@router.post("/ask/batch", response_model=BatchAnswersOut, tags=["questions"],
             responses={200: {"description": "the answers, in the order of the questions",
                              "content": {NDJSON: {"schema": {"$ref": "#/components/schemas/AnswerOut"},
                                                   "example": _line(ANSWER_EXAMPLE).decode()}}},
                        **_errors(400, 413, 422, 503)},
             summary="Answer several questions in one batched pass, or stream them as NDJSON",
             description="Answers in the order of the questions; one invalid question rejects the whole batch "
                         "(before anything is streamed). " + _STREAM_DESCRIPTION)
async def ask_batch(
    body: AskBatchRequest, service: ServiceDep,
    accept: Annotated[str | None, Header(description="application/x-ndjson: stream the answers, one JSON "
                                         "object a line, as each is answered; otherwise one JSON object")] = None,
) -> Any:
    if _wants_ndjson(accept):
        answers = await service.ask_stream(body.questions, body.top_k, body.reader, body.filters)
        return StreamingResponse(_ndjson_lines(answers), media_type=NDJSON)
    answers_list = await service.ask_batch(body.questions, body.top_k, body.reader, body.filters)
    return BatchAnswersOut(answers=[AnswerOut.of(a) for a in answers_list])


@router.post("/search", response_model=SearchOut, tags=["questions"], responses=_errors(400, 413, 422, 503),
             summary="Retrieve passages for a question, without reading them")
async def search(body: SearchRequest, service: ServiceDep) -> SearchOut:
    """What `qa search` prints: the passages the reader would see, best first."""
    return await service.search(body.question, body.k, body.filters)


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
    article = await service.document(doc_id)
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
    written = await service.write(doc_id, body, if_match)
    if written.replaced:
        response.status_code = 200
    response.headers["ETag"] = f'"{written.article.sha256}"'
    return _written(written)


def _written(w: Written) -> DocumentWritten:
    a = w.article
    return DocumentWritten(doc_id=a.doc_id, title=a.title, date=a.date, source=a.source, url=a.url, author=a.author,
                           chars=len(a.text), sha256=a.sha256, replaced=w.replaced, documents=w.documents,
                           chunks=w.chunks)


@router.post("/documents/bulk", response_model=BulkOut, tags=["documents"], dependencies=[Depends(require_writer)],
             responses=_errors(400, 401, 403, 413, 422, 503),
             summary="Add or replace several articles, in order, each answered on its own")
async def bulk_documents(body: BulkRequest, service: ServiceDep) -> BulkOut:
    """Each article goes through the same write as POST /documents, one after the other: a written
    one is on disk (fsynced) and searchable before the next starts, and an article that fails
    (bad doc_id, over a limit, If-Match, a page that holds no article, a full disk) is reported
    in its place while the others are still written. The answer is 200 whenever the batch was
    processed; ``failed`` counts the articles not written."""
    outcome = await service.write_bulk(body.documents)
    results = []
    for i, (item, r) in enumerate(zip(body.documents, outcome.results, strict=True)):
        if r.article is not None:
            results.append(BulkItemOut(index=i, doc_id=r.article.doc_id, status="written",
                                       http_status=200 if r.replaced else 201, replaced=r.replaced,
                                       sha256=r.article.sha256, chars=len(r.article.text)))
        else:
            status, code, message = r.error or (500, "internal_error", "no outcome")
            results.append(BulkItemOut(index=i, doc_id=item.doc_id, status="error", http_status=status,
                                       error=ErrorDetail(code=code, message=message)))
    written = sum(1 for r in results if r.status == "written")
    return BulkOut(results=results, written=written, failed=len(results) - written, documents=outcome.documents,
                   chunks=outcome.chunks)


@router.delete("/documents/{doc_id:any_text}", response_model=DocumentDeleted, tags=["documents"],
               dependencies=[Depends(require_writer)], responses=_errors(401, 403, 404, 409, 422, 503, 507),
               summary="Delete an article")
async def delete_document(doc_id: str, service: ServiceDep) -> DocumentDeleted:
    documents, chunks = await service.delete_document(doc_id)
    return DocumentDeleted(doc_id=doc_id, deleted=True, documents=documents, chunks=chunks)


# ---------------------------------------------------------------- health
@router.get("/healthz", response_model=HealthOut, tags=["health"], summary="Liveness: the process answers")
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@router.get("/readyz", response_model=ReadyOut, tags=["health"],
            responses={503: {"model": ReadyOut, "description": "loading, the load failed, or the store cannot be "
                             "reached"}},
            summary="Readiness: models and index loaded, and the store answers")
async def readyz(service: ServiceDep) -> Any:
    def not_ready(status: Any, message: str) -> JSONResponse:
        body = ReadyOut(ready=False, status=status, message=message)
        return JSONResponse(body.model_dump(), status_code=503,
                            headers={"Retry-After": str(service.api.retry_after_s)})

    if service.status == "loading" and service.store_down is not None:
        return not_ready("store_unavailable", "waiting for the store, which cannot be reached yet; retrying")
    if service.status == "loading" and service.store_empty is not None:
        return not_ready("store_empty", "the store holds no index yet; waiting for `qa index build <corpus folder>` "
                         "to fill it")
    if service.status != "ready" or service.pipeline.index is None:
        return not_ready(service.status, "loading models and the index" if service.status == "loading"
                         else "loading failed; the server log says why")
    try:
        counts = await service.readiness()
    except StoreUnavailable:
        return not_ready("store_unavailable", "the store cannot be reached; the server log says why")
    idx = service.pipeline.index
    return ReadyOut(ready=True, status="ready", documents=counts.documents, chunks=counts.chunks,
                    embed_model=idx.base_manifest.embed_model, reader=service.pipeline.reader.name)
