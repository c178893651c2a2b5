"""The Milvus server going away and coming back, under a real ``qa serve`` (fake embedder, span
reader) and the real CLI: one-line CLI errors, ``/readyz`` false and ``503 store_unavailable``
while it is gone, at start-up and mid-run, and the replica answering again by itself once the
server is back on the same port and data folder, without a restart of ``qa serve``.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import ZANZIBAR_ID, ZANZIBAR_TEXT
from tests.api.test_server import QA_BIN, Server, _launch, _stop, _wait_ready
from tests.reliability.conftest import AUTH
from tests.store.conftest import build_store, free_port, replica_env, start_milvus_server, stop

pytestmark = pytest.mark.skipif(not QA_BIN.exists(), reason=f"{QA_BIN} is not installed")
QUESTION = "Where were the talks held?"
RECOVERY_S = 30.0  # the replica's next store check, plus a loaded machine


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = QA_BIN.with_name(args[0])
    return subprocess.run([str(exe), *args[1:]], capture_output=True, text=True, env=env, timeout=120)


def _assert_store_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "store_unavailable" and r.headers["retry-after"] == "1", r.text


def _wait_for(server: Server, status: int) -> httpx.Response:
    """/readyz's first answer with ``status``, or its last one after RECOVERY_S."""
    deadline = time.monotonic() + RECOVERY_S
    while True:
        try:
            r = httpx.get(f"{server.url}/readyz", timeout=10)
            if r.status_code == status or time.monotonic() > deadline:
                return r
        except httpx.TransportError:  # not listening yet
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def test_the_store_away_at_start_up_and_mid_run(tmp_path: Path, seeds_copy: Path) -> None:
    data, port = tmp_path / "milvus", free_port()
    milvus = start_milvus_server(data, port)
    root = tmp_path / "replica"  # no corpus folder: the store holds the articles
    env = replica_env(root, f"http://127.0.0.1:{port}")
    build_store(seeds_copy, env)
    stop(milvus)

    # Away at start-up: the CLI says so in one line; the server waits for it instead of exiting.
    for args in (["ask", QUESTION], ["qa", "search", "talks"], ["qa", "index", "status"]):
        r = _cli(args, env)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert f"127.0.0.1:{port}" in r.stderr
    server = _launch(root, env, "replica")
    try:
        r = _wait_for(server, 503)  # up to the first answer (the process is importing meanwhile)
        deadline = time.monotonic() + RECOVERY_S
        while r.json().get("status") != "store_unavailable" and time.monotonic() < deadline:
            time.sleep(0.2)  # loading the models, then trying the store
            r = httpx.get(f"{server.url}/readyz", timeout=10)
        assert r.status_code == 503 and r.json()["status"] == "store_unavailable", r.text
        _assert_store_unavailable(httpx.post(f"{server.url}/ask", json={"question": QUESTION}, timeout=30))
        assert server.proc.poll() is None

        milvus = start_milvus_server(data, port)
        _wait_ready(server)
        assert httpx.post(f"{server.url}/ask", json={"question": QUESTION}, timeout=60).status_code == 200

        # Away mid-run: every request that needs it is 503 store_unavailable, /readyz false.
        stop(milvus)
        _assert_store_unavailable(httpx.post(f"{server.url}/ask", json={"question": QUESTION}, timeout=30))
        _assert_store_unavailable(httpx.get(f"{server.url}/documents/{ZANZIBAR_ID}", timeout=30))
        _assert_store_unavailable(httpx.post(f"{server.url}/documents", json={"doc_id": ZANZIBAR_ID,
                                                                             "text": ZANZIBAR_TEXT},
                                             headers=AUTH, timeout=30))
        ready = _wait_for(server, 503)
        assert ready.status_code == 503 and ready.json()["status"] == "store_unavailable", ready.text
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200

        # Back on the same port and data: answers again, no restart of qa serve.
        milvus = start_milvus_server(data, port)
        assert _wait_for(server, 200).status_code == 200
        assert httpx.post(f"{server.url}/ask", json={"question": QUESTION}, timeout=60).status_code == 200
        r = httpx.put(f"{server.url}/documents/{ZANZIBAR_ID}", json={"text": ZANZIBAR_TEXT}, headers=AUTH, timeout=60)
        assert r.status_code == 201, r.text
        assert httpx.get(f"{server.url}/documents/{ZANZIBAR_ID}", timeout=30).json()["text"] == ZANZIBAR_TEXT
        assert httpx.get(f"{server.url}/readyz", timeout=10).json()["documents"] == 6
    finally:
        _stop(server)
        stop(milvus)
    log = server.output()
    assert "Traceback" not in log, log
    # the state changes are logged, not every failed request or retry
    assert log.count("trying again until the store answers") == 1, log
    assert log.count("answering 503 store_unavailable until it is back") == 1, log
    assert log.count("the store answers again") == 2, log
