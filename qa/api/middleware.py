"""Plain ASGI middleware: one log line per request, a last-resort 500, and the request body limit."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qa.api.errors import INTERNAL_MESSAGE

log = logging.getLogger("qa.api")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
REQUEST_ID_HEADER = "X-Request-ID"
# The id of the request being handled, for every log line written meanwhile (worker threads
# started with anyio.to_thread copy it).
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record (``%(request_id)s``; "-" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def _printable(path: str) -> str:
    """The path with control characters escaped, so a request cannot forge log lines."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", path)


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class AccessLogMiddleware:
    """Logs ``METHOD /path STATUS 12.3ms`` for each request on logger ``qa.api``, and gives every
    request an id: the client's ``X-Request-ID`` when it is a plain token of at most 128
    characters, else a new one; it is echoed in the response and on every log line.

    Only the path is logged: query strings (``GET /ask?q=...``), bodies and headers (tokens)
    never are. An exception that escapes the app is logged with its traceback and answered
    with a generic 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500
        started = False
        given = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"x-request-id"), "")
        rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        header = (b"x-request-id", rid.encode("latin-1"))

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                started = True
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("%s %s: unhandled error", scope["method"], _printable(scope["path"]))
            status = 500
            if not started:
                await _send_error(send_wrapper, 500, "internal_error", INTERNAL_MESSAGE)
        finally:
            ms = (time.perf_counter() - t0) * 1000.0
            log.info("%s %s %d %.1fms", scope["method"], _printable(scope["path"]), status, ms)
            request_id.reset(token)


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with 413, whether announced by Content-Length or streamed.

    The body is read here (up to the limit) and handed on whole, so the app never sees a
    partial body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return f"the request body is over {self.max_bytes} bytes (QA_MAX_BODY_BYTES)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_error(send, 400, "invalid_request", "the Content-Length header is not a number")
                    return
                if declared > self.max_bytes:
                    await _send_error(send, 413, "body_too_large", self._too_large())
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away; let the app see it
                chunks_message: Message = message
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_error(send, 413, "body_too_large", self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                chunks_message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return chunks_message
            return await receive()

        await self.app(scope, replay, send)
