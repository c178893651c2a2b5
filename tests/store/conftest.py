"""Stores under test: the local one, Milvus Lite embedded in a file, and a `milvus-lite server`
on a loopback port (started once per session, stopped at the end)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qa.pipeline import QAPipeline
from qa.settings import Settings
from qa.store.milvus_server import free_port, stop
from qa.store.milvus_server import start as start_milvus_server
from tests.conftest import FakeEmbedder
from tests.test_index import NoReader

STORES = ["local", "milvus-lite", "milvus-server"]


def replica_env(root: Path, uri: str, **extra: str) -> dict[str, str]:
    """The ``qa`` environment of a replica in ``root`` on the Milvus server at ``uri``: the fake
    embedder, the span reader, a write token, store checks every 0.5 s; no article folder
    (``root/corpus`` is not created) and no local index."""
    from tests.reliability.conftest import TOKEN, fake_model_env

    root.mkdir(parents=True, exist_ok=True)
    return fake_model_env(root, QA_STORE="milvus", QA_MILVUS_URI=uri, QA_API_TOKEN=TOKEN, QA_LOG_QUESTIONS="false",
                          QA_STORE_CHECK_S="0.5", QA_STORE_RETRY_MAX_S="1", **extra)


def build_store(corpus: Path, env: dict[str, str]) -> None:
    """``qa index build corpus`` into the store that ``env`` names."""
    qa = Path(sys.executable).with_name("qa")
    r = subprocess.run([str(qa), "index", "build", str(corpus)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a `milvus-lite server` for this session."""
    port = free_port()
    proc = start_milvus_server(tmp_path_factory.mktemp("milvus_server"), port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def store_settings(kind: str, tmp_path: Path, corpus: Path, request: pytest.FixtureRequest,
                   **overrides: object) -> Settings:
    """Settings of a small-chunk pipeline over ``corpus`` on store ``kind`` (a fresh collection)."""
    base: dict[str, object] = dict(index_dir=tmp_path / "idx", corpus_dir=corpus, chunk_tokens=60,
                                   chunk_overlap_tokens=10)
    if kind == "milvus-lite":
        base.update(store="milvus", milvus_uri=str(tmp_path / "milvus.db"))
    elif kind == "milvus-server":
        base.update(store="milvus", milvus_uri=request.getfixturevalue("milvus_server"),
                    milvus_collection=f"t_{uuid.uuid4().hex[:12]}")
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(store_kind: str, tmp_path: Path, seeds_copy: Path,
                  request: pytest.FixtureRequest) -> Callable[..., QAPipeline]:
    """A pipeline (fake embedder, no reader) on this test's store; more calls: more processes on it."""
    settings = store_settings(store_kind, tmp_path, seeds_copy, request)

    def new(embedder: FakeEmbedder | None = None, **overrides: object) -> QAPipeline:
        s = settings.model_copy(update=overrides) if overrides else settings
        return QAPipeline(s, embedder=embedder or FakeEmbedder(), reader=NoReader())

    return new
