"""API fixtures: a pipeline over a copy of the seeds with the fake embedder and a scripted reader."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from qa.api import create_app
from qa.api.config import ApiSettings
from qa.pipeline import QAPipeline
from qa.settings import Settings
from qa.types import Hit, Reading, Span
from tests.conftest import ROOT, SEEDS, FakeEmbedder

ZANZIBAR_ID = "zanzibar-summit"
ZANZIBAR_TEXT = ("The Zanzibar summit opened on 3 March 2031 in Stone Town, the negotiators said. "
                 "Delegates from twelve countries attended.")
ZANZIBAR_QUESTION = "When did the Zanzibar summit open?"


class ScriptedReader:
    """A reader with fixed answers: for a question containing a key, the value is the answer
    wherever it appears in the retrieved chunks (score 0.9); otherwise no answer.

    ``hold`` (an Event) makes reading wait until it is set, to keep a question in flight;
    ``started`` is set when a read begins.
    """

    name = "scripted"

    def __init__(self, answers: dict[str, str] | None = None, hold: threading.Event | None = None) -> None:
        self.answers = answers if answers is not None else {}
        self.hold = hold
        self.started = threading.Event()

    def load(self) -> None:
        pass

    def read_batch(self, questions: list[str], hits: list[list[Hit]]) -> list[Reading]:
        self.started.set()
        if self.hold is not None and not self.hold.wait(timeout=30):
            raise TimeoutError("test reader was never released")
        return [self._read(q, h) for q, h in zip(questions, hits, strict=True)]

    def _read(self, question: str, hits: list[Hit]) -> Reading:
        wanted = [a for key, a in self.answers.items() if key.lower() in question.lower()]
        spans = []
        for answer in wanted:
            for h in hits:
                i = h.chunk.text.find(answer)
                if i >= 0:
                    start = h.chunk.start + i
                    spans.append(Span(h.chunk.doc_id, start, start + len(answer), answer, 0.9))
        return Reading(spans, 0.1 if spans else 1.0)

    def read(self, question: str, hits: list[Hit]) -> Reading:
        return self.read_batch([question], [hits])[0]


def api_settings(**overrides: object) -> ApiSettings:
    """Edge settings that ignore the caller's environment (no stray QA_API_TOKEN)."""
    values: dict[str, object] = {"api_token": None, "log_questions": False}
    values.update(overrides)
    return ApiSettings(**values)  # type: ignore[arg-type]


def make_pipeline(root: Path, reader: object | None = None, embedder: object | None = None,
                  load: bool = True, **settings: object) -> QAPipeline:
    """A pipeline over a fresh copy of the seeds under ``root``; small chunks as in tests/test_index.py."""
    corpus = root / "corpus"
    if not corpus.exists():
        shutil.copytree(SEEDS, corpus)
    s = Settings(index_dir=root / "idx", corpus_dir=corpus, chunk_tokens=60, chunk_overlap_tokens=10,
                 **settings)  # type: ignore[arg-type]
    p = QAPipeline(s, embedder=embedder if embedder is not None else FakeEmbedder(),  # type: ignore[arg-type]
                   reader=reader if reader is not None else ScriptedReader({"zanzibar": "3 March 2031"}))  # type: ignore[arg-type]
    if load:
        p.load(corpus)
    return p


def make_client(pipeline: QAPipeline, api: ApiSettings | None = None, bind_host: str = "127.0.0.1",
                workers: int = 1) -> TestClient:
    app = create_app(pipeline.settings, pipeline, api if api is not None else api_settings(), bind_host=bind_host,
                     workers=workers)
    return TestClient(app)


@pytest.fixture(scope="module")
def shared_pipeline(tmp_path_factory: pytest.TempPathFactory) -> QAPipeline:
    """One loaded pipeline per module, for tests that do not write."""
    return make_pipeline(tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def client(shared_pipeline: QAPipeline) -> Iterator[TestClient]:
    with make_client(shared_pipeline) as c:
        yield c


@pytest.fixture
def writable(tmp_path: Path) -> QAPipeline:
    """A loaded pipeline of its own, for tests that add or delete articles."""
    return make_pipeline(tmp_path)


def wait_ready(client: TestClient, timeout: float = 30.0) -> Response:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get("/readyz")
        if r.status_code == 200 or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def assert_error(r: Response, status: int, code: str | None = None) -> dict[str, str]:
    """``r`` is the JSON error shape with ``status``, and leaks no traceback or server path."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    for leak in ("Traceback", "/work/", str(ROOT), "/tmp/", 'File "'):
        assert leak not in r.text, r.text
    return body["error"]  # type: ignore[no-any-return]
