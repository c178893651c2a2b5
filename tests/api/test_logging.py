"""One log line per request; questions only when QA_LOG_QUESTIONS allows, tokens never."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from qa.pipeline import QAPipeline
from tests.api.conftest import api_settings, make_client

SECRET_QUESTION = "Which codename did Operation Nightjar use?"
TOKEN = "tok_abcdefghijklmnopqrstuvwxyz012345"
LINE = re.compile(r"^(GET|POST|DELETE|PUT) (\S+) (\d{3}) (\d+\.\d)ms$")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def api_log() -> Iterator[_Records]:
    logger = logging.getLogger("qa.api")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def _traffic(pipeline: QAPipeline, log_questions: bool) -> None:
    api = api_settings(api_token=SecretStr(TOKEN), log_questions=log_questions)
    with make_client(pipeline, api) as c:
        c.get("/ask", params={"q": SECRET_QUESTION, "top_k": 2})
        c.post("/ask", json={"question": SECRET_QUESTION})
        c.post("/ask/batch", json={"questions": [SECRET_QUESTION]})
        c.post("/documents", json={"doc_id": "memo", "text": "A memo."}, headers={"Authorization": f"Bearer {TOKEN}"})
        c.post("/documents", json={"doc_id": "memo", "text": "A memo."}, headers={"Authorization": "Bearer wrong"})
        c.get("/healthz?probe=1")


def test_one_line_per_request_with_method_path_status_latency(writable: QAPipeline, api_log: _Records) -> None:
    _traffic(writable, log_questions=False)
    requests = [m.groups() for line in api_log.lines if (m := LINE.match(line))]
    assert [(m, p, s) for m, p, s, _ in requests] == [
        ("GET", "/ask", "200"), ("POST", "/ask", "200"), ("POST", "/ask/batch", "200"),
        ("POST", "/documents", "201"), ("POST", "/documents", "401"), ("GET", "/healthz", "200")]


def test_questions_tokens_and_query_strings_stay_out_of_the_log(writable: QAPipeline, api_log: _Records) -> None:
    _traffic(writable, log_questions=False)
    text = "\n".join(api_log.lines)
    assert "Nightjar" not in text and TOKEN not in text and "wrong" not in text
    assert "?" not in text and "probe" not in text and "top_k" not in text


def test_questions_are_logged_at_info_when_allowed(writable: QAPipeline, api_log: _Records) -> None:
    _traffic(writable, log_questions=True)
    assert sum(SECRET_QUESTION in line for line in api_log.lines) == 3  # GET, POST and the batch
    assert TOKEN not in "\n".join(api_log.lines)


def test_control_characters_in_the_path_cannot_forge_log_lines(client, api_log: _Records) -> None:  # type: ignore[no-untyped-def]
    client.get("/documents/x%0AGET /forged 200 1.0ms")
    assert not any(line.startswith("GET /forged") for line in api_log.lines)
    assert any("\\x0a" in line for line in api_log.lines)


def test_an_unexpected_error_is_logged_with_its_traceback(shared_pipeline: QAPipeline, api_log: _Records,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(shared_pipeline, "ask_batch", broken)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("qa.api").addHandler(handler)
    try:
        with make_client(shared_pipeline) as c:
            assert c.post("/ask", json={"question": "Who?"}).status_code == 500
    finally:
        logging.getLogger("qa.api").removeHandler(handler)
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in records)
    assert "POST /ask 500" in "\n".join(api_log.lines)


def test_every_response_and_log_line_carries_a_request_id(client) -> None:  # type: ignore[no-untyped-def]
    import logging

    from qa.api.middleware import RequestIdFilter

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("qa.api")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        mine = client.get("/healthz", headers={"X-Request-ID": "client-req-42"})
        made = client.get("/healthz")
        forged = client.get("/healthz", headers={"X-Request-ID": "bad id\twith tab"})
        missing = client.get("/no-such-page", headers={"X-Request-ID": "r-404"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    assert mine.headers["X-Request-ID"] == "client-req-42"
    assert len(made.headers["X-Request-ID"]) == 32 and forged.headers["X-Request-ID"] != "bad id\twith tab"
    assert missing.status_code == 404 and missing.headers["X-Request-ID"] == "r-404"
    ids = {getattr(r, "request_id", None) for r in records
           if "/healthz" in r.getMessage() or "/no-such" in r.getMessage()}
    assert {"client-req-42", made.headers["X-Request-ID"], "r-404"} <= ids
