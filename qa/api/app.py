"""The FastAPI application: a thin HTTP layer over :class:`qa.pipeline.QAPipeline`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from qa import __version__
from qa.api.config import ApiSettings
from qa.api.errors import install_error_handlers
from qa.api.middleware import AccessLogMiddleware, BodyLimitMiddleware
from qa.api.routes import router
from qa.api.service import Service
from qa.pipeline import QAPipeline
from qa.settings import Settings

STATIC_DIR = Path(__file__).resolve().parent / "static"  # Swagger UI, so /docs works offline
PAGE_DIR = STATIC_DIR / "page"  # the question page at /: plain HTML, CSS and JavaScript, no build step
# The page loads nothing from other hosts; the browser enforces it.
PAGE_CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
DESCRIPTION = """\
Extractive question answering over a folder of news articles: every answer is a span of an
article, cited by `doc_id` and character offsets (`text[start:end]`).

Reading is open. Writing (`POST`/`DELETE /documents`) needs `Authorization: Bearer <token>` when
the server has `QA_API_TOKEN`; without a token, writes work only on a server bound to loopback.
Every error is `{"error": {"code": ..., "message": ...}}`.
"""


def create_app(
    settings: Settings,
    pipeline: QAPipeline | None = None,
    api_settings: ApiSettings | None = None,
    *,
    bind_host: str = "127.0.0.1",
    workers: int = 1,
    on_loaded: Callable[[Service], None] | None = None,
) -> FastAPI:
    """Build the app; models and the index load once, in the background, when it starts.

    Args:
        settings: the core's settings (index and corpus folders, limits).
        pipeline: an already built pipeline (tests inject one with fakes); loaded at start-up
            unless it is loaded already.
        api_settings: the HTTP edge's settings (default: from ``QA_*`` environment variables).
        bind_host: the address the server listens on; decides whether writes need a token.
        workers: server processes; writes need exactly one.
        on_loaded: called once loading has finished or failed (``Service.status`` says which).

    Example:
        >>> from fastapi.testclient import TestClient  # doctest: +SKIP
        >>> with TestClient(create_app(Settings())) as client:
        ...     client.get("/ask", params={"q": "Who is Russia's lead negotiator?"}).json()["answer"]
        'Vladimir Medinsky'
    """
    api = api_settings if api_settings is not None else ApiSettings()
    service = Service(settings, api, pipeline if pipeline is not None else QAPipeline(settings),
                      bind_host=bind_host, workers=workers, on_loaded=on_loaded)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            service.start(tg)
            yield
            tg.cancel_scope.cancel()

    app = FastAPI(title="article-qa", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.service = service
    install_error_handlers(app)
    app.include_router(router)
    _add_page(app)
    _add_docs(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=api.max_body_bytes)
    if api.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=api.cors_origins,
                           allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "If-Match", "X-Request-ID"],
                           expose_headers=["ETag", "Retry-After", "X-Request-ID"])
    app.add_middleware(AccessLogMiddleware)  # added last: outermost, so it sees every answer
    return app


def _add_page(app: FastAPI) -> None:
    """The question page at / and its files under /page/."""
    app.mount("/page", StaticFiles(directory=PAGE_DIR), name="page")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE_DIR / "index.html", headers={"Content-Security-Policy": PAGE_CSP})


def _add_docs(app: FastAPI) -> None:
    """Swagger UI at /docs, from the packaged copy (FastAPI's default loads it from a CDN)."""
    title = f"{app.title} API"
    openapi_url = app.openapi_url or "/openapi.json"
    local = (STATIC_DIR / "swagger-ui-bundle.js").is_file()
    if local:
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        if not local:  # a source tree without the packaged copy
            return get_swagger_ui_html(openapi_url=openapi_url, title=title)
        return get_swagger_ui_html(openapi_url=openapi_url, title=title,
                                   swagger_js_url="/static/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger-ui.css",
                                   swagger_favicon_url="/static/favicon-32x32.png")
