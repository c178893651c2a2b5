"""``serve`` arguments and the worker app factory (no server started)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from qa.api import server
from qa.api.auth import is_loopback
from qa.settings import Settings


@pytest.fixture
def restore_api_logger() -> Iterator[None]:
    logger = logging.getLogger("qa.api")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


@pytest.mark.parametrize("kwargs", [{"workers": 0}, {"port": 70000}])
def test_serve_refuses_bad_arguments(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be"):
        server.serve(Settings(), **kwargs)  # type: ignore[arg-type]


def test_app_factory_rebuilds_the_settings_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_api_logger: None
) -> None:
    s = Settings(index_dir=tmp_path / "idx", corpus_dir=tmp_path / "corpus", top_k=7)
    monkeypatch.setenv(server.ENV_SETTINGS, s.model_dump_json())
    monkeypatch.setenv(server.ENV_HOST, "0.0.0.0")
    monkeypatch.setenv(server.ENV_WORKERS, "3")
    monkeypatch.setenv("QA_TOP_K", "2")  # the settings serve() was given win over the environment
    app = server.app_factory()
    service = app.state.service
    assert service.settings.index_dir == tmp_path / "idx" and service.settings.top_k == 7
    assert service.bind_host == "0.0.0.0" and service.workers == 3
    assert service.status == "loading"  # nothing loads before the app starts


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                                ("[::1]", True), ("127.9.9.9", True), ("0.0.0.0", False),
                                                ("::", False), ("10.0.0.1", False), ("myhost", False), ("", False)])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_cors_origins_are_a_setting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.api.conftest import api_settings, make_client, make_pipeline

    p = make_pipeline(tmp_path)
    api = api_settings().model_copy(update={"cors_origins": ["https://news.example"]})
    with make_client(p, api) as c:
        r = c.options("/ask", headers={"Origin": "https://news.example", "Access-Control-Request-Method": "POST"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://news.example"
        other = c.get("/healthz", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers
    with make_client(p) as c:  # the default: no cross-origin access
        assert "access-control-allow-origin" not in c.get("/healthz", headers={"Origin": "https://news.example"}).headers


@pytest.mark.parametrize("store", ["local", "milvus"])
def test_several_workers_leave_a_shared_store_to_the_workers(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_api_logger: None
) -> None:
    """With --workers N, the parent builds or checks a local index once for the workers; a shared store
    it neither touches nor fills: down or empty, each worker waits for it (/readyz 503), as one server does."""
    import uvicorn

    from qa.pipeline import QAPipeline
    from qa.store.milvus import MilvusStore

    ran: list[dict[str, object]] = []
    checked: list[Path] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: ran.append(kw))
    monkeypatch.setattr(QAPipeline, "ensure_index", lambda self, corpus, **kw: checked.append(corpus))

    def unreachable(self: MilvusStore) -> None:
        raise AssertionError("the parent process connected to the shared store")

    monkeypatch.setattr(MilvusStore, "client", unreachable)
    s = Settings(store=store, milvus_uri="http://127.0.0.1:9", index_dir=tmp_path / "idx",
                 corpus_dir=tmp_path / "corpus")
    (tmp_path / "corpus").mkdir()
    assert server.serve(s, workers=2) == 0
    assert len(ran) == 1 and ran[0]["workers"] == 2
    assert checked == ([tmp_path / "corpus"] if store == "local" else [])
