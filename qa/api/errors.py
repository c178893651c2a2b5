"""Every error leaves the API as ``{"error": {"code", "message"}}``, mapped here and nowhere else.

Domain errors (:mod:`qa.errors`) become 4xx with their one-line message, or a 503 with a
generic one when the message would describe the server's files; a store that cannot be reached
(a Milvus server down) is ``503 store_unavailable`` with Retry-After. Anything unexpected is a
generic 500; the details (and the traceback) go to the server log only.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa.errors import (
    Conflict,
    CorpusError,
    DocumentNotFound,
    IndexBusy,
    IndexCorrupt,
    IndexMissing,
    IndexStale,
    IngestError,
    InvalidDocument,
    InvalidQuestion,
    ModelUnavailable,
    PreconditionFailed,
    QAError,
    StoreUnavailable,
)

log = logging.getLogger("qa.api")

UNAVAILABLE_MESSAGE = "the service cannot answer right now (index or model unavailable); the server log says why"
INTERNAL_MESSAGE = "internal error; the server log has the details"
DISK_FULL_MESSAGE = "the server's disk is full; nothing was changed; retry once space has been freed"
STORE_MESSAGE = ("the article store cannot be reached right now; retry shortly (a write answered so was not "
                 "applied, or was applied as a whole: repeating it is safe)")
STORAGE_MESSAGE = "the server cannot write its files right now; nothing was changed; the server log says why"
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class ApiError(Exception):
    """An HTTP answer decided at the edge (auth, limits, readiness): status, code and message."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers) if headers is not None else None


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


# Domain errors whose message is safe and useful to a client: (status, code).
_CLIENT_ERRORS: list[tuple[type[QAError], int, str]] = [
    (InvalidQuestion, 422, "invalid_question"),
    (InvalidDocument, 422, "invalid_document"),
    (DocumentNotFound, 404, "document_not_found"),
    (IngestError, 422, "not_ingestible"),
    (Conflict, 409, "conflict"),
    (PreconditionFailed, 412, "precondition_failed"),
]
# Domain errors about the server's own state: their messages name server paths, so they stay in the log.
_SERVER_ERRORS = (IndexMissing, IndexStale, IndexCorrupt, CorpusError, ModelUnavailable)


def error_parts(exc: BaseException, where: str,
                retry_after_s: int = 1) -> tuple[int, str, str, dict[str, str] | None]:
    """(status, code, message, headers) of ``exc`` as the API answers it, for a whole response or
    for one item of a bulk write or a streamed batch. A message that would describe the server's
    files or a traceback goes to the log (naming ``where``, e.g. ``POST /documents``) instead.
    ``retry_after_s`` (``QA_RETRY_AFTER_S``) is the Retry-After of a 503 busy or store_unavailable.
    """
    if isinstance(exc, ApiError):
        return exc.status, exc.code, exc.message, exc.headers
    if isinstance(exc, IndexBusy):  # a write that waited too long for another writer: nothing changed
        return 503, "busy", f"the server is busy: {exc}", {"Retry-After": str(retry_after_s)}
    if isinstance(exc, StoreUnavailable):  # its message names the store's address: the service logs it
        return 503, "store_unavailable", STORE_MESSAGE, {"Retry-After": str(retry_after_s)}
    if isinstance(exc, QAError):
        for cls, status, code in _CLIENT_ERRORS:
            if isinstance(exc, cls):
                return status, code, str(exc), None
        if isinstance(exc, _SERVER_ERRORS):
            log.error("%s: %s: %s", where, type(exc).__name__, exc)
            return 503, "unavailable", UNAVAILABLE_MESSAGE, None
    elif isinstance(exc, OSError):  # a failed file write (a write rolls itself back first)
        log.error("%s: %s", where, type(exc).__name__, exc_info=exc)
        if exc.errno in _DISK_FULL:
            return 507, "insufficient_storage", DISK_FULL_MESSAGE, None
        return 503, "storage_unavailable", STORAGE_MESSAGE, None
    log.error("%s: unhandled %s", where, type(exc).__name__, exc_info=exc)
    return 500, "internal_error", INTERNAL_MESSAGE, None


def _handled(request: Request, exc: Exception) -> JSONResponse:
    service = getattr(request.app.state, "service", None)
    retry_after_s = service.api.retry_after_s if service is not None else 1
    return error_response(*error_parts(exc, f"{request.method} {request.url.path}", retry_after_s))


def _where(loc: Sequence[Any]) -> str:
    """``("body", "questions", 2)`` -> ``questions[2]``; the request part stays out of the way."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def validation_message(errors: Sequence[Mapping[str, Any]]) -> tuple[int, str, str]:
    """(status, code, message) for pydantic/FastAPI request errors; never echoes the input."""
    first: Mapping[str, Any] = errors[0] if errors else {"type": "", "loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        why = (first.get("ctx") or {}).get("error", "cannot be parsed")
        return 400, "invalid_json", f"the request body is not valid JSON ({why}); send a JSON object"
    loc = tuple(first.get("loc", ()))
    if loc == ("body",) and first.get("type") in ("model_attributes_type", "dict_type", "missing"):
        return 422, "invalid_request", (
            "the request body must be a JSON object; send it with Content-Type: application/json"
        )
    msgs = [f"{_where(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errors[:3]]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return 422, "invalid_request", "; ".join(msgs) + more


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    status, code, message = validation_message(exc.errors())
    return error_response(status, code, message)


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return error_response(404, "not_found", f"no endpoint at {request.url.path}; the API is described at /docs")
    if exc.status_code == 405:
        return error_response(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}",
                              exc.headers)
    if exc.status_code == 400:  # FastAPI could not parse the body (not UTF-8, nested too deeply, ...)
        return error_response(400, "invalid_json", "the request body cannot be parsed as JSON (it must be UTF-8 and "
                              "not absurdly nested); send a JSON object", exc.headers)
    return error_response(exc.status_code, f"http_{exc.status_code}", str(exc.detail), exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map every error the app can raise onto the one JSON error shape."""
    app.add_exception_handler(ApiError, _handled)
    app.add_exception_handler(QAError, _handled)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OSError, _handled)  # 507 for a full disk, else 503; the OS message is logged only
    app.add_exception_handler(Exception, _handled)
