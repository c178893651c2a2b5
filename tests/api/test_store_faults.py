"""A shared store (Milvus) that cannot be reached: 503 store_unavailable with Retry-After on every
request that needs it, /readyz false, and the service recovering by itself, at start-up and mid-run.

Milvus Lite embedded in a file, with a switch that makes every call fail as a down server does;
the real server going away is tested in tests/store/test_faults.py.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qa.api.errors import error_parts
from qa.corpus import load_corpus
from qa.errors import StoreUnavailable
from qa.pipeline import QAPipeline
from qa.settings import Settings
from qa.store.milvus import MilvusStore
from tests.api.conftest import ZANZIBAR_ID, ZANZIBAR_TEXT, ScriptedReader, api_settings, make_client
from tests.conftest import SEEDS, FakeEmbedder

ADDRESS = "http://10.1.2.3:19530"


class SwitchableStore(MilvusStore):
    """Milvus Lite whose every call fails as an unreachable server's while ``down`` is set."""

    down = False

    def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise StoreUnavailable(f"the Milvus store {ADDRESS} failed {what} (Fail connecting to server)")
        return super()._call(what, method, *args, **kwargs)


def _pipeline(tmp_path: Path) -> tuple[QAPipeline, SwitchableStore]:
    corpus = tmp_path / "corpus"
    shutil.copytree(SEEDS, corpus)
    s = Settings(store="milvus", milvus_uri=str(tmp_path / "m.db"), index_dir=tmp_path / "idx", corpus_dir=corpus,
                 chunk_tokens=60, chunk_overlap_tokens=10)
    store = SwitchableStore(s)
    return QAPipeline(s, embedder=FakeEmbedder(), reader=ScriptedReader({"zanzibar": "3 March 2031"}),  # type: ignore[arg-type]
                      store=store), store


FAST = {"store_check_s": 0.05, "store_retry_max_s": 0.2}


def _wait_ready(c: TestClient, timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = c.get("/readyz")
        if r.status_code == 200:
            return dict(r.json())
        time.sleep(0.05)
    raise AssertionError(f"not ready after {timeout_s}s: {r.text}")


def _assert_store_unavailable(r: Any, retry_after: str = "1") -> None:
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "store_unavailable"
    assert r.headers["retry-after"] == retry_after
    message = r.json()["error"]["message"]
    assert "\n" not in message and ADDRESS not in message and "retry" in message


def test_the_store_going_away_is_503_store_unavailable_and_readyz_false_until_it_is_back(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p, store = _pipeline(tmp_path)
    p.load()
    with make_client(p, api_settings(**FAST)) as c:
        assert _wait_ready(c)["documents"] == 5
        store.down = True
        with caplog.at_level(logging.INFO, logger="qa.api"):
            for r in (c.post("/ask", json={"question": "Where were the talks held?"}),
                      c.get("/ask", params={"q": "Where were the talks held?"}),
                      c.post("/ask/batch", json={"questions": ["Where?", "When?"]}),
                      c.post("/search", json={"question": "talks"}),
                      c.get("/documents"),
                      c.get("/documents/2025-06-02-istanbul-talks"),
                      c.post("/documents", json={"doc_id": ZANZIBAR_ID, "text": ZANZIBAR_TEXT}),
                      c.delete("/documents/2025-06-02-istanbul-talks")):
                _assert_store_unavailable(r)
            ready = c.get("/readyz")
            assert ready.status_code == 503 and ready.headers["retry-after"] == "1"
            assert ready.json()["ready"] is False and ready.json()["status"] == "store_unavailable"
            time.sleep(0.1)  # past store_check_s: /readyz checks the store again, and it is still down
            assert c.get("/readyz").status_code == 503
            assert c.get("/healthz").status_code == 200  # alive: a load balancer only stops routing to it

            store.down = False
            assert _wait_ready(c, 5.0)["documents"] == 5
            r = c.post("/documents", json={"doc_id": ZANZIBAR_ID, "text": ZANZIBAR_TEXT})
            assert r.status_code == 201, r.text
            assert c.post("/ask", json={"question": "When did the Zanzibar summit open?"}).json()["answer"] == \
                "3 March 2031"
            assert c.get("/readyz").json()["documents"] == 6  # this replica's write shows at once
    changes = [r.getMessage() for r in caplog.records if "store" in r.getMessage()]
    # one line when it went away (not one per request) and one when it came back; the address only in the log
    assert len([m for m in changes if "cannot be reached" in m]) == 1, changes
    assert ADDRESS in changes[0]
    assert len([m for m in changes if "answers again" in m]) == 1, changes


def test_a_store_unreachable_at_start_up_is_waited_for(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p, store = _pipeline(tmp_path)
    p.load()  # fills the store, as `qa index build` would; then a replica starts while it is down
    fresh = QAPipeline(p.settings, embedder=FakeEmbedder(), reader=ScriptedReader(), store=store)  # type: ignore[arg-type]
    store.down = True
    with caplog.at_level(logging.INFO, logger="qa.api"), make_client(fresh, api_settings(**FAST)) as c:
        time.sleep(0.5)  # several tries meanwhile
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "store_unavailable", ready.text
        _assert_store_unavailable(c.post("/ask", json={"question": "Where were the talks held?"}))
        _assert_store_unavailable(c.get("/documents"))
        store.down = False
        assert _wait_ready(c, 5.0)["documents"] == 5
        assert c.post("/ask", json={"question": "Where were the talks held?"}).status_code == 200
    tries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cannot load")]
    assert len(tries) == 1 and "trying again" in tries[0], tries  # logged once, not once per try
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_retry_after_is_the_configured_one_while_the_store_is_down(tmp_path: Path) -> None:
    p, store = _pipeline(tmp_path)
    p.load()
    fresh = QAPipeline(p.settings, embedder=FakeEmbedder(), reader=ScriptedReader(), store=store)  # type: ignore[arg-type]
    store.down = True  # down from the start: the replica waits, and every answer says when to come back
    with make_client(fresh, api_settings(retry_after_s=7, **FAST)) as c:
        time.sleep(0.2)
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.headers["retry-after"] == "7", ready.text
        _assert_store_unavailable(c.post("/ask", json={"question": "Where were the talks held?"}), "7")
        _assert_store_unavailable(c.get("/documents"), "7")
        _assert_store_unavailable(c.post("/documents", json={"doc_id": ZANZIBAR_ID, "text": ZANZIBAR_TEXT}), "7")


def test_store_unavailable_maps_to_503_without_the_address() -> None:
    status, code, message, headers = error_parts(StoreUnavailable(f"the Milvus store {ADDRESS} failed searching"),
                                                 "POST /ask")
    assert (status, code, headers) == (503, "store_unavailable", {"Retry-After": "1"})
    assert ADDRESS not in message


def test_a_replica_never_fills_an_empty_shared_store_and_waits_for_a_build(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Replicas starting together on an empty Milvus store would each fill it: a server waits
    (/readyz ``store_empty``) for `qa index build` instead, and is ready by itself once it ran."""
    p, store = _pipeline(tmp_path)
    with caplog.at_level(logging.INFO, logger="qa.api"), make_client(p, api_settings(**FAST)) as c:
        time.sleep(0.5)  # several tries meanwhile
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "store_empty", ready.text
        assert "qa index build" in ready.json()["message"]
        assert c.post("/ask", json={"question": "Where were the talks held?"}).status_code == 503
        assert not store.client().has_collection(store.chunks_name)  # nobody filled it
        builder = QAPipeline(p.settings, embedder=FakeEmbedder(), reader=ScriptedReader(), store=store)  # type: ignore[arg-type]
        builder.build(load_corpus(p.settings.corpus_dir), corpus=p.settings.corpus_dir)  # `qa index build`
        assert _wait_ready(c, 5.0)["documents"] == 5
    waits = [r.getMessage() for r in caplog.records if "waiting for it" in r.getMessage()]
    assert len(waits) == 1 and "qa index build" in waits[0], waits  # logged once, not once per try
