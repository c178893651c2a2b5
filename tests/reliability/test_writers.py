"""Writers of one index folder: a build under a running server, another process holding the
folder, and writes that meet a long compaction or one that fails.

Each write is either applied (and answered 2xx) or refused unchanged (503 busy with Retry-After,
or a one-line CLI error naming who holds the folder); none waits without bound.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

import qa.store.local
from qa import writer_lock
from qa.errors import IndexBusy
from qa.index import current_version, load_index
from tests.api.conftest import ZANZIBAR_ID, ZANZIBAR_TEXT, make_client, make_pipeline
from tests.api.test_server import QA_BIN, _start, _stop
from tests.reliability.conftest import AUTH, TOKEN, fake_model_env, listed_ids

NEW = {"doc_id": ZANZIBAR_ID, "text": ZANZIBAR_TEXT}


def _post(url: str, doc_id: str, text: str) -> httpx.Response:
    return httpx.post(f"{url}/documents", json={"doc_id": doc_id, "text": text}, headers=AUTH, timeout=60)


def _build(root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(QA_BIN), "index", "build", str(root / "corpus")], cwd=root, capture_output=True,
                          text=True, env=fake_model_env(root, **env), timeout=300)


@pytest.mark.skipif(not QA_BIN.exists(), reason=f"{QA_BIN} is not installed")
def test_a_build_under_a_running_server_keeps_its_writes_and_is_picked_up(serve_root: Path) -> None:
    server = _start(serve_root, fake_model_env(serve_root, QA_API_TOKEN=TOKEN), "server")
    try:
        assert _post(server.url, "before-build", "Written before the rebuild: the Kestrel dam.").status_code == 201
        old = current_version(serve_root / "index")
        (serve_root / "corpus" / "fresh.txt").write_text("Fresh\nAdded to the folder, then built.", encoding="utf-8")
        r = _build(serve_root)
        assert r.returncode == 0, r.stderr
        assert current_version(serve_root / "index") != old and not old.exists()  # the server's version is gone
        # the server's next write goes into the new version, not the removed one
        r2 = _post(server.url, "after-build", "Written after the rebuild, about the Osprey weir.")
        assert r2.status_code == 201, r2.text
        deadline = time.monotonic() + 10
        while "fresh" not in listed_ids(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert {"before-build", "after-build", "fresh"} <= listed_ids(server)  # reloaded on its own
        assert {"before-build", "after-build", "fresh"} <= set(load_index(serve_root / "index").articles)
    finally:
        _stop(server)
    assert "Traceback" not in server.output(), server.output()


@pytest.mark.skipif(not QA_BIN.exists(), reason=f"{QA_BIN} is not installed")
def test_a_held_index_folder_gives_a_clear_message_and_a_busy_answer(serve_root: Path) -> None:
    server = _start(serve_root, fake_model_env(serve_root, QA_API_TOKEN=TOKEN, QA_WRITE_TIMEOUT_S="0.5"), "server")
    try:
        with writer_lock.hold(serve_root / "index", 5, "a test holding the folder"):
            r = _build(serve_root, QA_WRITE_TIMEOUT_S="0.5")
            assert r.returncode == 1
            line = r.stderr.strip().splitlines()[-1]
            assert line.startswith("error: ") and f"pid {os.getpid()}" in line and "a test holding the folder" in line
            busy = _post(server.url, "blocked", "This write waits for the folder and gives up.")
            assert busy.status_code == 503 and busy.json()["error"]["code"] == "busy"
            assert busy.headers["Retry-After"] and "being written by" in busy.json()["error"]["message"]
        assert "blocked" not in listed_ids(server) and not (serve_root / "corpus" / "blocked.txt").exists()
        assert _post(server.url, "blocked", "Once the folder is free the write goes through.").status_code == 201
        assert _build(serve_root).returncode == 0
    finally:
        _stop(server)


def test_the_write_that_starts_a_compaction_is_answered_at_once_and_others_wait_boundedly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = make_pipeline(tmp_path, journal_compact_min_chunks=0, journal_compact_fraction=0.01, write_timeout_s=0.3)
    release, started = threading.Event(), threading.Event()
    real_save = qa.store.local.save_index

    def slow_save(*args: object, **kwargs: object) -> Path:
        started.set()
        release.wait(30)
        return real_save(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(qa.store.local, "save_index", slow_save)
    with make_client(p) as c:
        assert c.post("/documents", json=NEW).status_code == 201  # returned with its compaction still running
        assert started.wait(10) and p._compaction is not None and p._compaction.is_alive()
        r = c.post("/documents", json={"doc_id": "waiting", "text": "A write during the compaction."})
        assert r.status_code == 503 and r.headers["Retry-After"] and r.json()["error"]["code"] == "busy"
        assert "waiting" not in p.index.articles  # type: ignore[union-attr]  # refused unchanged
        assert not (tmp_path / "corpus" / "waiting.txt").exists()
        with pytest.raises(IndexBusy, match="QA_WRITE_TIMEOUT_S"):
            p.delete_document(ZANZIBAR_ID)
        release.set()
        p.wait_for_compaction(30)
        assert c.post("/documents", json={"doc_id": "waiting", "text": "Now it goes through."}).status_code == 201
    assert {ZANZIBAR_ID, "waiting"} <= set(load_index(tmp_path / "idx").articles)


@pytest.mark.parametrize("background", [True, False])
def test_an_unexpected_compaction_error_never_fails_an_applied_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, background: bool
) -> None:
    p = make_pipeline(tmp_path, journal_compact_min_chunks=0, journal_compact_fraction=0.01,
                      compact_in_background=background)

    def broken_save(*args: object, **kwargs: object) -> Path:
        raise KeyError("an error nobody expected")

    monkeypatch.setattr(qa.store.local, "save_index", broken_save)
    version = current_version(tmp_path / "idx")
    with make_client(p) as c:
        assert c.post("/documents", json=NEW).status_code == 201
        p.wait_for_compaction(30)
        assert ZANZIBAR_ID in p.index.articles  # type: ignore[union-attr]
    assert current_version(tmp_path / "idx") == version  # not compacted, the journal has the write
    assert ZANZIBAR_ID in load_index(tmp_path / "idx").articles
