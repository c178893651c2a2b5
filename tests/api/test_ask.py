"""Questions over HTTP return exactly the answer object of ``ask --json``."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from qa.pipeline import QAPipeline
from tests.api.conftest import ZANZIBAR_ID, ZANZIBAR_QUESTION, ZANZIBAR_TEXT, make_client, make_pipeline

NEGOTIATOR = "Who is Russia's lead negotiator?"


def _without_latency(d: dict) -> dict:  # type: ignore[type-arg]
    return {k: v for k, v in d.items() if k != "latency_ms"}


def test_post_ask_returns_the_answer_object_of_ask_json(client: TestClient, shared_pipeline: QAPipeline) -> None:
    r = client.post("/ask", json={"question": NEGOTIATOR})
    assert r.status_code == 200
    expected = shared_pipeline.ask(NEGOTIATOR).to_dict()
    assert list(r.json()) == list(expected)  # same keys, same order
    assert _without_latency(r.json()) == _without_latency(expected)
    assert r.json()["answer"] is None and r.json()["retrieved"]  # the scripted reader knows nothing of this


def test_get_ask_equals_post_ask(client: TestClient) -> None:
    post = client.post("/ask", json={"question": NEGOTIATOR, "top_k": 3, "reader": "auto"})
    get = client.get("/ask", params={"q": NEGOTIATOR, "top_k": 3, "reader": "auto"})
    assert get.status_code == 200
    assert _without_latency(get.json()) == _without_latency(post.json())


def test_top_k_reaches_the_retriever(client: TestClient) -> None:
    one = client.get("/ask", params={"q": NEGOTIATOR, "top_k": 1}).json()
    many = client.get("/ask", params={"q": NEGOTIATOR, "top_k": 10}).json()
    assert len(one["retrieved"]) == 1 < len(many["retrieved"])


def test_batch_answers_in_order(client: TestClient, shared_pipeline: QAPipeline) -> None:
    questions = [NEGOTIATOR, "Where were the talks held?", "How many drones did Russia launch?"]
    r = client.post("/ask/batch", json={"questions": questions, "top_k": 4})
    assert r.status_code == 200
    answers = r.json()["answers"]
    assert [a["question"] for a in answers] == questions
    expected = [a.to_dict() for a in shared_pipeline.ask_batch(questions, 4)]
    assert [_without_latency(a) for a in answers] == [_without_latency(e) for e in expected]


def test_an_answer_cites_exact_offsets(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = make_pipeline(tmp_path)
    p.add_document(ZANZIBAR_ID, ZANZIBAR_TEXT)
    with make_client(p) as c:
        a = c.post("/ask", json={"question": ZANZIBAR_QUESTION}).json()
        assert a["answer"] == "3 March 2031"
        cite = a["citations"][0]
        text = c.get(f"/documents/{cite['doc_id']}").json()["text"]
        assert text[cite["start"] : cite["end"]] == cite["text"] == "3 March 2031"
        assert "Zanzibar summit opened" in cite["context"]


def test_search_returns_passages_that_slice_their_articles_and_honours_filters(client, shared_pipeline) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/search", json={"question": "Who is Russia's lead negotiator?", "k": 4})
    assert r.status_code == 200, r.text
    passages = r.json()["passages"]
    assert len(passages) == 4 and passages[0]["score"] >= passages[-1]["score"]
    for p in passages:
        assert shared_pipeline.document(p["doc_id"]).text[p["start"] : p["end"]] == p["text"]
    one = passages[0]["doc_id"]
    only = client.post("/search", json={"question": "negotiator", "k": 10, "filters": {"doc_ids": [one]}}).json()
    assert only["passages"] and {p["doc_id"] for p in only["passages"]} == {one}
    got = client.get("/search", params={"q": "Who is Russia's lead negotiator?", "k": 4}).json()
    assert [p["text"] for p in got["passages"]] == [p["text"] for p in passages]
    assert client.post("/search", json={"question": "", "k": 4}).status_code == 422
    assert client.get("/search", params={"q": "x", "k": 0}).status_code == 422


def test_n_best_through_the_api(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.api.conftest import ScriptedReader

    client = make_client(make_pipeline(tmp_path, reader=ScriptedReader({"negotiator": "Vladimir Medinsky"})))
    r = client.post("/ask", json={"question": "Who is Russia's lead negotiator?", "n_best": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert 1 <= len(body["n_best"]) <= 3 and body["n_best"][0]["answer"] == body["answer"]
    assert all(a["citations"] for a in body["n_best"])
    assert client.post("/ask", json={"question": "x?", "n_best": 11}).status_code == 422


def test_get_ask_takes_the_post_name_too(client) -> None:  # type: ignore[no-untyped-def]
    by_q = client.get("/ask", params={"q": "Who is Russia's lead negotiator?"})
    by_name = client.get("/ask", params={"question": "Who is Russia's lead negotiator?"})
    assert by_q.status_code == by_name.status_code == 200
    assert by_q.json()["retrieved"] == by_name.json()["retrieved"]
    assert client.get("/ask").status_code == 422
    assert client.get("/ask", params={"q": "a?", "question": "b?"}).status_code == 422


def test_the_server_warms_the_date_parser_at_start(shared_pipeline: QAPipeline, monkeypatch: pytest.MonkeyPatch
                                                    ) -> None:
    """dateparser's first parse takes seconds: the server does it in the background at start-up,
    not inside the first request that filters by a date in words."""
    import qa.ingest.dates

    warmed = threading.Event()
    monkeypatch.setattr(qa.ingest.dates, "warm_date_parser", warmed.set)
    with make_client(shared_pipeline) as c:
        assert c.get("/healthz").status_code == 200
        assert warmed.wait(10)
