"""A real ``qa serve`` process (uvicorn, real models, span reader) over HTTP, and a crash after a write."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import ZANZIBAR_ID, ZANZIBAR_QUESTION, ZANZIBAR_TEXT
from tests.conftest import SEEDS

pytestmark = pytest.mark.integration

QA_BIN = Path(sys.executable).with_name("qa")
TOKEN = "integration-token-0123456789"
READY_TIMEOUT_S = 300.0  # model loading shares two cores with whatever else runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update(QA_INDEX_DIR=str(root / "index"), QA_CORPUS_DIR=str(root / "corpus"), QA_READER="span",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **extra)
    return env


def _start(root: Path, env: dict[str, str], name: str) -> Server:
    return _wait_ready(_launch(root, env, name))


def _launch(root: Path, env: dict[str, str], name: str) -> Server:
    """``qa serve`` on a free port, not waited for (its output goes to ``<root>/<name>.log``)."""
    port = _free_port()
    log = root / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(QA_BIN), "serve", "--port", str(port)], cwd=root, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    return Server(proc, f"http://127.0.0.1:{port}", log)


def _wait_ready(server: Server) -> Server:
    """``server`` once /readyz answers 200 (stopped, and the test failed, if it exits or takes too long)."""
    proc = server.proc
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"qa serve exited with {proc.returncode}:\n{server.output()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    _stop(server)
    raise AssertionError(f"qa serve not ready after {READY_TIMEOUT_S}s:\n{server.output()}")


def _stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGINT)
        try:
            server.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not QA_BIN.exists():
        pytest.skip(f"{QA_BIN} is not installed")
    r = tmp_path_factory.mktemp("serve")
    shutil.copytree(SEEDS, r / "corpus")
    return r


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[Server]:
    s = _start(root, _env(root, QA_API_TOKEN=TOKEN, QA_LOG_QUESTIONS="false"), "first")
    yield s
    _stop(s)


def test_real_server_answers_over_http(server: Server) -> None:
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["ready"] and ready["documents"] == 5 and ready["reader"] == "span"
    assert ready["embed_model"] == "sentence-transformers/all-MiniLM-L6-v2"

    r = httpx.post(f"{server.url}/ask", json={"question": "Who is Russia's lead negotiator?"}, timeout=120)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["answer"] == "Vladimir Medinsky"
    cite = answer["citations"][0]
    text = httpx.get(f"{server.url}/documents/{cite['doc_id']}").json()["text"]
    assert text[cite["start"] : cite["end"]] == "Vladimir Medinsky"

    off_topic = httpx.get(f"{server.url}/ask", params={"q": "Who won the 2022 FIFA World Cup?"}, timeout=120)
    assert off_topic.status_code == 200 and off_topic.json()["answer"] is None

    batch = httpx.post(f"{server.url}/ask/batch", json={"questions": ["Who is Russia's lead negotiator?", "Why?"]},
                       timeout=120)
    assert [a["question"] for a in batch.json()["answers"]] == ["Who is Russia's lead negotiator?", "Why?"]

    assert httpx.post(f"{server.url}/documents", json={"doc_id": "x", "text": "y"}).status_code == 401
    bad = httpx.post(f"{server.url}/ask", content=b"{nope", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "Traceback" not in bad.text

    out = server.output()
    ready_lines = [line for line in out.splitlines() if line.startswith("serving http://127.0.0.1:")]
    assert len(ready_lines) == 1, out
    assert "POST /ask 200" in out and "lead negotiator" not in out and TOKEN not in out  # QA_LOG_QUESTIONS=false
    assert "Traceback" not in out


def test_an_acknowledged_write_survives_sigkill(root: Path, server: Server) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.post(f"{server.url}/documents", json={"doc_id": ZANZIBAR_ID, "text": ZANZIBAR_TEXT,
                                                    "title": "Zanzibar summit opens"}, headers=auth, timeout=120)
    assert r.status_code == 201, r.text
    server.proc.send_signal(signal.SIGKILL)  # no shutdown, no flush: only what was fsynced counts
    server.proc.wait(timeout=10)

    again = _start(root, _env(root, QA_API_TOKEN=TOKEN), "after-kill")
    try:
        doc = httpx.get(f"{again.url}/documents/{ZANZIBAR_ID}")
        assert doc.status_code == 200, doc.text
        assert (doc.json()["text"], doc.json()["title"]) == (ZANZIBAR_TEXT, "Zanzibar summit opens")
        assert httpx.get(f"{again.url}/readyz").json()["documents"] == 6
        answer = httpx.post(f"{again.url}/ask", json={"question": ZANZIBAR_QUESTION}, timeout=120).json()
        assert answer["answer"] == "3 March 2031", answer
        assert answer["citations"][0]["doc_id"] == ZANZIBAR_ID
    finally:
        _stop(again)
    # stopped by SIGINT: a clean shutdown, exit 130 as for any interrupted command
    assert again.proc.returncode in (0, 130) and "Traceback" not in again.output(), again.output()


def test_serve_exits_non_zero_when_the_corpus_is_missing(tmp_path: Path) -> None:
    if not QA_BIN.exists():
        pytest.skip(f"{QA_BIN} is not installed")
    env = _env(tmp_path)  # corpus/ does not exist and there is no index
    proc = subprocess.run([str(QA_BIN), "serve", "--port", str(_free_port())], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=READY_TIMEOUT_S)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "corpus folder" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
