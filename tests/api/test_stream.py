"""POST /ask/batch with ``Accept: application/x-ndjson``: one answer a line, in order, each as it is answered."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from fastapi.testclient import TestClient

from qa.api import create_app
from qa.types import Hit, Reading
from tests.api.conftest import (
    ZANZIBAR_ID,
    ZANZIBAR_QUESTION,
    ZANZIBAR_TEXT,
    ScriptedReader,
    api_settings,
    assert_error,
    make_client,
    make_pipeline,
)

NDJSON = {"Accept": "application/x-ndjson"}
QUESTIONS = [ZANZIBAR_QUESTION, "Who is Russia's lead negotiator?", "Where did the Zanzibar summit open?"]


class HoldOnReader(ScriptedReader):
    """Reads a question containing ``hold_on`` only once ``release`` is set; raises on ``fail_on``."""

    def __init__(self, hold_on: str = "\x00", fail_on: str = "\x00") -> None:
        super().__init__({"zanzibar": "3 March 2031", "negotiator": "Vladimir Medinsky"})
        self.hold_on, self.fail_on = hold_on, fail_on
        self.waiting = threading.Event()
        self.release = threading.Event()

    def read_batch(self, questions: list[str], hits: list[list[Hit]]) -> list[Reading]:
        if any(self.fail_on in q for q in questions):
            raise RuntimeError("the model crashed")
        if any(self.hold_on in q for q in questions):
            self.waiting.set()
            if not self.release.wait(30):
                raise TimeoutError("never released")
        return super().read_batch(questions, hits)


def _lines(text: str) -> list[dict[str, Any]]:
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def _without_latency(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "latency_ms"}


@pytest.fixture(scope="module")
def zanzibar_client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    p = make_pipeline(tmp_path_factory.mktemp("stream"), reader=HoldOnReader())
    p.add_document(ZANZIBAR_ID, ZANZIBAR_TEXT)
    with make_client(p) as c:
        yield c


def test_the_stream_holds_the_json_answers_one_a_line_in_order(zanzibar_client: TestClient) -> None:
    body = {"questions": QUESTIONS, "top_k": 4}
    plain = zanzibar_client.post("/ask/batch", json=body)
    assert plain.headers["content-type"].startswith("application/json")
    r = zanzibar_client.post("/ask/batch", json=body, headers=NDJSON)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = _lines(r.text)
    assert [line["question"] for line in lines] == QUESTIONS
    assert [_without_latency(x) for x in lines] == [_without_latency(a) for a in plain.json()["answers"]]
    assert lines[0]["answer"] == "3 March 2031" and lines[1]["answer"] == "Vladimir Medinsky"
    for accept in ("application/json", "application/x-ndjson;q=0", "*/*"):
        r = zanzibar_client.post("/ask/batch", json=body, headers={"Accept": accept})
        assert r.headers["content-type"].startswith("application/json") and "answers" in r.json(), accept


def test_what_refuses_a_batch_refuses_the_stream_before_it_starts(zanzibar_client: TestClient) -> None:
    def post(body: dict[str, Any]) -> Any:
        return zanzibar_client.post("/ask/batch", json=body, headers=NDJSON)

    assert_error(post({"questions": [ZANZIBAR_QUESTION, "  "]}), 422, "invalid_question")
    assert_error(post({"questions": ["Who?"] * 33}), 422, "batch_too_large")
    assert_error(post({"questions": ["Who?"], "filters": {"since": "not a date"}}), 422, "invalid_question")
    assert_error(post({"questions": ["Who?"], "top_k": 0}), 422, "invalid_request")


def test_each_answer_is_sent_as_soon_as_it_is_answered(tmp_path: Path) -> None:
    reader = HoldOnReader(hold_on="negotiator")
    p = make_pipeline(tmp_path, reader=reader)
    p.add_document(ZANZIBAR_ID, ZANZIBAR_TEXT)
    app = create_app(p.settings, p, api_settings())
    payload = json.dumps({"questions": QUESTIONS}).encode()
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/ask/batch", "raw_path": b"/ask/batch", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
             "headers": [(b"content-type", b"application/json"), (b"accept", b"application/x-ndjson"),
                         (b"content-length", str(len(payload)).encode())]}
    chunks: list[bytes] = []

    async def main() -> None:
        delivered = False
        first = anyio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": payload, "more_body": False}
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                chunks.append(message["body"])
                first.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(app, scope, receive, send)
            with anyio.fail_after(20):
                await first.wait()
                # The first answer is out while the second question is still being read.
                assert await anyio.to_thread.run_sync(reader.waiting.wait, 20)
            assert [json.loads(c)["question"] for c in chunks] == QUESTIONS[:1]
            reader.release.set()

    try:
        anyio.run(main)
    finally:
        reader.release.set()
    lines = _lines(b"".join(chunks).decode())
    assert [line["question"] for line in lines] == QUESTIONS
    assert lines[0]["answer"] == "3 March 2031" and lines[1]["answer"] == "Vladimir Medinsky"


def test_a_failure_midway_ends_the_stream_with_an_error_line_and_frees_the_slot(tmp_path: Path) -> None:
    p = make_pipeline(tmp_path, reader=HoldOnReader(fail_on="boom"))
    p.add_document(ZANZIBAR_ID, ZANZIBAR_TEXT)
    with make_client(p, api_settings(max_concurrent_requests=1, max_queued_requests=0)) as c:
        r = c.post("/ask/batch", json={"questions": [ZANZIBAR_QUESTION, "boom?", ZANZIBAR_QUESTION]}, headers=NDJSON)
        assert r.status_code == 200
        lines = _lines(r.text)
        assert len(lines) == 2 and lines[0]["answer"] == "3 March 2031"
        assert lines[1] == {"error": {"code": "internal_error", "message": "internal error; the server log has the "
                                      "details"}}
        assert "crashed" not in r.text and "Traceback" not in r.text
        # The one question slot came back: the next question is not refused as busy.
        assert c.post("/ask", json={"question": ZANZIBAR_QUESTION}).status_code == 200
        assert c.post("/ask/batch", json={"questions": [ZANZIBAR_QUESTION]}, headers=NDJSON).status_code == 200
