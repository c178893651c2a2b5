"""``qa serve``: run the API under uvicorn.

With one worker the app is built here and its loading outcome decides the exit code. With
several, uvicorn imports :func:`app_factory` in each worker process and the settings travel
through the environment; the index is built or checked once here first, so that workers never
race to build it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import TYPE_CHECKING

from qa.api.config import ApiSettings
from qa.api.middleware import RequestIdFilter
from qa.api.service import Service
from qa.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

# How serve() hands its arguments to worker processes (read by app_factory).
ENV_SETTINGS = "QA_SERVE_SETTINGS_JSON"
ENV_HOST = "QA_SERVE_HOST"
ENV_WORKERS = "QA_SERVE_WORKERS"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def configure_logging() -> None:
    """Request lines and load messages of logger ``qa.api`` at INFO on stderr."""
    logger = logging.getLogger("qa.api")
    if not any(getattr(h, "_qa_api", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(RequestIdFilter())
        handler._qa_api = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> int:
    """Serve the API until interrupted; returns the exit code (1 if the pipeline cannot load).

    Example:
        >>> serve(Settings(), host="127.0.0.1", port=8000)  # doctest: +SKIP
        serving http://127.0.0.1:8000 (5 articles, 22 chunks, ...); docs at /docs
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535, got {port}")
    import uvicorn

    api = ApiSettings()  # a bad QA_* value stops here, with its name, before anything loads
    configure_logging()
    if workers > 1:
        return _serve_workers(settings, host, port, workers)

    from qa.api.app import create_app

    failed: list[str] = []

    def on_loaded(service: Service) -> None:
        if service.status == "ready":
            print(f"serving {_url(host, port)} ({service.describe()}); docs at /docs", flush=True)
        else:
            failed.append(service.failure or "unknown error")
            server.should_exit = True

    app = create_app(settings, api_settings=api, bind_host=host, workers=1, on_loaded=on_loaded)
    # access_log off: uvicorn's own line would carry the query string (GET /ask?q=...)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning",
                                           lifespan="on", root_path=api.root_path.rstrip("/")))
    server.run()
    if failed:
        print(f"error: cannot start: {failed[0]}", file=sys.stderr, flush=True)
        return 1
    return 0


def _serve_workers(settings: Settings, host: str, port: int, workers: int) -> int:
    import uvicorn

    from qa.pipeline import QAPipeline

    builder = QAPipeline(settings)
    if builder.store.keeps_corpus_files:
        # Build or check the local index once, before the workers load it side by side.
        builder.ensure_index(builder.resolve_corpus(), notify=logging.getLogger("qa.api").info)
    # A shared store (Milvus) is neither filled nor required here: like one server, each worker waits
    # (/readyz 503) while it cannot be reached or holds no index yet (`qa index build` fills it).
    os.environ[ENV_SETTINGS] = settings.model_dump_json()
    os.environ[ENV_HOST] = host
    os.environ[ENV_WORKERS] = str(workers)
    writes = "read-only" if builder.store.keeps_corpus_files else "writes go to the shared store"
    print(f"starting {workers} workers on {_url(host, port)} ({writes}; each says when it is ready)", flush=True)
    uvicorn.run("qa.api.server:app_factory", factory=True, host=host, port=port, workers=workers,
                access_log=False, log_level="warning", lifespan="on", root_path=ApiSettings().root_path.rstrip("/"))
    return 0


def app_factory() -> FastAPI:
    """The app of one worker process, from the settings :func:`serve` put in the environment."""
    from qa.api.app import create_app

    raw = os.environ.get(ENV_SETTINGS)
    settings = Settings(**json.loads(raw)) if raw else Settings()
    host = os.environ.get(ENV_HOST, "127.0.0.1")
    workers = int(os.environ.get(ENV_WORKERS, "1"))
    configure_logging()

    def on_loaded(service: Service) -> None:
        if service.status == "ready":
            print(f"worker {os.getpid()} ready ({service.describe()})", flush=True)

    return create_app(settings, bind_host=host, workers=workers, on_loaded=on_loaded)
