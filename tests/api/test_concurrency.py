"""Model work runs off the event loop: the server answers while questions and writes are computed."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from httpx import Response

from qa.api.config import ApiSettings
from tests.api.conftest import (
    ZANZIBAR_ID,
    ZANZIBAR_QUESTION,
    ZANZIBAR_TEXT,
    ScriptedReader,
    api_settings,
    assert_error,
    make_client,
    make_pipeline,
    wait_ready,
)
from tests.conftest import FakeEmbedder

QUICK_S = 2.0  # generous on a loaded 2-core machine; the blocked work takes until released


def test_healthz_answers_while_a_slow_question_is_computed(tmp_path: Path) -> None:
    hold = threading.Event()
    reader = ScriptedReader(hold=hold)
    p = make_pipeline(tmp_path, reader=reader)
    with make_client(p) as c, ThreadPoolExecutor(1) as pool:
        slow = pool.submit(c.post, "/ask", json={"question": "Who is Russia's lead negotiator?"})
        try:
            assert reader.started.wait(10), "the question never reached the reader"
            t0 = time.perf_counter()
            r = c.get("/healthz")
            assert r.status_code == 200 and r.json() == {"status": "ok"}
            assert c.get("/readyz").status_code == 200
            assert c.get("/documents").status_code == 200
            assert time.perf_counter() - t0 < QUICK_S
            assert not slow.done()
        finally:
            hold.set()
        assert slow.result(timeout=10).status_code == 200


@pytest.mark.parametrize("slow", ["filters", "reader_check", "document"])
def test_healthz_answers_while_a_request_waits_on_slow_parsing_disk_or_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slow: str
) -> None:
    """Dates in filters (dateparser), the reader's model folder (a disk) and an article lookup (the
    index) are worked out in a worker thread, never on the event loop."""
    import qa.api.service
    import qa.ingest.dates

    release, reached = threading.Event(), threading.Event()

    def blocking(real):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            reached.set()
            if not release.wait(30):
                raise TimeoutError("never released")
            return real(*args, **kwargs)
        return wrapper

    p = make_pipeline(tmp_path)
    if slow == "filters":
        monkeypatch.setattr(qa.ingest.dates, "iso_date", blocking(qa.ingest.dates.iso_date))
        request = ("post", "/ask", {"json": {"question": "Who?", "filters": {"since": "2025-06-01"}}})
    elif slow == "reader_check":
        monkeypatch.setattr(qa.api.service, "reader_model_available", blocking(lambda model: False))
        request = ("post", "/ask", {"json": {"question": "Who?", "reader": "transformers"}})
    else:
        monkeypatch.setattr(p, "document", blocking(p.document))
        request = ("get", "/documents/not-there", {})
    with make_client(p) as c, ThreadPoolExecutor(1) as pool:
        method, path, kwargs = request
        pending = pool.submit(getattr(c, method), path, **kwargs)
        try:
            assert reached.wait(10), "the request never reached the slow call"
            t0 = time.perf_counter()
            assert c.get("/healthz").status_code == 200
            assert time.perf_counter() - t0 < QUICK_S
            assert not pending.done()
        finally:
            release.set()
        # answered as ever once released: with filters, the unavailable reader (422), the unknown id (404)
        assert pending.result(timeout=10).status_code == {"filters": 200, "reader_check": 422, "document": 404}[slow]


def test_concurrent_questions_each_get_their_own_answer(tmp_path: Path) -> None:
    p = make_pipeline(tmp_path)
    p.add_document(ZANZIBAR_ID, ZANZIBAR_TEXT)
    questions = [ZANZIBAR_QUESTION, "Who is Russia's lead negotiator?", "Where were the talks held?"] * 4
    with make_client(p, api_settings(max_concurrent_requests=len(questions))) as c, ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda q: c.post("/ask", json={"question": q}), questions))
    for q, r in zip(questions, results, strict=True):
        assert r.status_code == 200
        assert r.json()["question"] == q
        assert r.json()["answer"] == ("3 March 2031" if q == ZANZIBAR_QUESTION else None)


class BlockingEmbedder(FakeEmbedder):
    """Blocks while embedding any text that contains ``marker``, until ``release`` is set."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.blocked = threading.Event()
        self.release = threading.Event()

    def embed_batch(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        if any(self.marker in t for t in texts):
            self.blocked.set()
            if not self.release.wait(30):
                raise TimeoutError("test embedder was never released")
        return super().embed_batch(texts, show_progress)


def test_questions_during_a_write_see_the_old_index_then_the_new(tmp_path: Path) -> None:
    emb = BlockingEmbedder(marker="Stone Town")
    p = make_pipeline(tmp_path, embedder=emb)
    with make_client(p) as c, ThreadPoolExecutor(1) as pool:
        write = pool.submit(c.post, "/documents", json={"doc_id": ZANZIBAR_ID, "text": ZANZIBAR_TEXT})
        try:
            assert emb.blocked.wait(10), "the write never reached the embedder"
            during = c.post("/ask", json={"question": ZANZIBAR_QUESTION})
            assert during.status_code == 200
            assert during.json()["answer"] is None and ZANZIBAR_ID not in during.json()["retrieved"]
            assert c.get("/healthz").status_code == 200
        finally:
            emb.release.set()
        assert write.result(timeout=30).status_code == 201
        after = c.post("/ask", json={"question": ZANZIBAR_QUESTION})
        assert after.json()["answer"] == "3 March 2031"


def test_concurrent_writes_are_all_kept(tmp_path: Path) -> None:
    p = make_pipeline(tmp_path)
    docs = {f"note-{i}": f"Note {i}: the harbour of Port Elwin{i} reopened on day {i}." for i in range(6)}
    with make_client(p) as c, ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda kv: c.post("/documents", json={"doc_id": kv[0], "text": kv[1]}),
                                docs.items()))
        assert all(r.status_code == 201 for r in results), [r.text for r in results]
        listed = {d["doc_id"] for d in c.get("/documents").json()["documents"]}
    assert set(docs) <= listed
    assert set(docs) <= set(p.index.articles)  # type: ignore[union-attr]


def test_too_many_requests_in_flight_are_refused_with_503(tmp_path: Path) -> None:
    hold = threading.Event()
    reader = ScriptedReader(hold=hold)
    p = make_pipeline(tmp_path, reader=reader)
    with make_client(p, api_settings(max_concurrent_requests=1)) as c, ThreadPoolExecutor(1) as pool:
        first = pool.submit(c.post, "/ask", json={"question": "Who?"})
        try:
            assert reader.started.wait(10)
            r = c.post("/ask", json={"question": "Who else?"})
            assert_error(r, 503, "busy")
            assert r.headers["retry-after"] == "1"
        finally:
            hold.set()
        assert first.result(timeout=10).status_code == 200
        assert c.post("/ask", json={"question": "Who else?"}).status_code == 200


def test_document_reads_do_not_wait_behind_questions(tmp_path: Path) -> None:
    hold = threading.Event()
    reader = ScriptedReader(hold=hold)
    p = make_pipeline(tmp_path, reader=reader)
    doc_id = sorted(p.index.articles)[0]  # type: ignore[union-attr]
    with make_client(p, api_settings(max_concurrent_requests=1, max_queued_requests=0)) as c, \
            ThreadPoolExecutor(1) as pool:
        first = pool.submit(c.post, "/ask", json={"question": "Who?"})
        try:
            assert reader.started.wait(10)
            assert_error(c.post("/ask", json={"question": "Who else?"}), 503, "busy")  # the one slot is taken
            assert c.get(f"/documents/{doc_id}").status_code == 200
            assert c.get("/documents", params={"limit": 2}).status_code == 200
        finally:
            hold.set()
        assert first.result(timeout=10).status_code == 200


class GatedEmbedder(FakeEmbedder):
    """``load()`` waits for ``release``: a slow model load."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def load(self) -> None:
        if not self.release.wait(30):
            raise TimeoutError("test embedder load was never released")


def test_loading_happens_in_the_background_and_readyz_says_when_done(tmp_path: Path) -> None:
    emb = GatedEmbedder()
    p = make_pipeline(tmp_path, embedder=emb, load=False)
    loaded = []
    from qa.api import create_app

    app = create_app(p.settings, p, api_settings(), on_loaded=lambda s: loaded.append(s.status))
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        try:
            assert c.get("/healthz").status_code == 200
            r = c.get("/readyz")
            assert r.status_code == 503 and r.json()["ready"] is False and r.json()["status"] == "loading"
            assert r.headers["retry-after"] == "1"
            assert_error(c.post("/ask", json={"question": "Who?"}), 503, "not_ready")
            assert_error(c.get("/documents"), 503, "not_ready")
        finally:
            emb.release.set()
        r = wait_ready(c)
        assert r.status_code == 200, r.text
        assert r.json() == {"ready": True, "status": "ready", "documents": 5, "chunks": p.index.n_chunks,  # type: ignore[union-attr]
                            "embed_model": "fake-embedder", "reader": "scripted", "message": None}
        assert c.post("/ask", json={"question": "Who?"}).status_code == 200
    assert loaded == ["ready"]


def test_a_failed_load_is_reported_without_server_paths(tmp_path: Path) -> None:
    p = make_pipeline(tmp_path, load=False, reader=ScriptedReader())
    p.settings.corpus_dir = tmp_path / "missing"  # CorpusError naming the folder
    from fastapi.testclient import TestClient

    from qa.api import create_app

    states: list[str] = []
    with TestClient(create_app(p.settings, p, api_settings(), on_loaded=lambda s: states.append(s.status))) as c:
        deadline = time.monotonic() + 10
        r: Response = c.get("/readyz")
        while r.json()["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
            r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["status"] == "failed"
        assert "missing" not in r.text and "/tmp/" not in r.text
        assert_error(c.post("/ask", json={"question": "Who?"}), 503, "not_ready")
        assert c.get("/healthz").status_code == 200
    assert states == ["failed"]


def test_api_settings_defaults() -> None:
    s = ApiSettings(_env_prefix="QA_TEST_UNUSED_")  # type: ignore[call-arg]
    assert s.api_token is None and s.log_questions is False  # questions stay out of logs unless enabled
    assert s.max_batch_questions >= 1 and s.max_body_bytes >= 1024 and s.max_concurrent_requests >= 1
