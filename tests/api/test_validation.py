"""Bad input is a 4xx with the JSON error shape, never a 500, a traceback or a server path."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qa.pipeline import QAPipeline
from tests.api.conftest import api_settings, assert_error, make_client

Q = "Who is Russia's lead negotiator?"
TOO_LONG_Q = "why " * 200  # 800 characters; the default limit is 500


# ---------------------------------------------------------------- questions
def test_empty_question(client: TestClient) -> None:
    assert_error(client.post("/ask", json={"question": ""}), 422, "invalid_question")


def test_whitespace_question(client: TestClient) -> None:
    assert_error(client.post("/ask", json={"question": " \n\t "}), 422, "invalid_question")


def test_whitespace_question_by_get(client: TestClient) -> None:
    assert_error(client.get("/ask", params={"q": "   "}), 422, "invalid_question")


def test_question_over_the_limit(client: TestClient) -> None:
    err = assert_error(client.post("/ask", json={"question": TOO_LONG_Q}), 422, "invalid_question")
    assert "limit is 500" in err["message"]


def test_question_over_the_limit_by_get(client: TestClient) -> None:
    assert_error(client.get("/ask", params={"q": TOO_LONG_Q}), 422, "invalid_question")


def test_question_missing(client: TestClient) -> None:
    err = assert_error(client.post("/ask", json={"top_k": 3}), 422, "invalid_request")
    assert "question" in err["message"]


def test_q_missing_by_get(client: TestClient) -> None:
    assert_error(client.get("/ask"), 422, "invalid_request")


def test_question_not_a_string(client: TestClient) -> None:
    assert_error(client.post("/ask", json={"question": 42}), 422, "invalid_request")


def test_question_with_a_lone_surrogate(client: TestClient) -> None:
    r = client.post("/ask", content=b'{"question": "\\ud800 who?"}', headers={"content-type": "application/json"})
    assert_error(r, 422, "invalid_request")


@pytest.mark.parametrize("top_k", [0, -1, 51, 10**30])
def test_top_k_out_of_range(client: TestClient, top_k: int) -> None:
    err = assert_error(client.post("/ask", json={"question": Q, "top_k": top_k}), 422, "invalid_request")
    assert err["message"].startswith("top_k:")


def test_top_k_out_of_range_by_get(client: TestClient) -> None:
    assert_error(client.get("/ask", params={"q": Q, "top_k": 0}), 422, "invalid_request")


def test_top_k_not_an_integer(client: TestClient) -> None:
    assert_error(client.post("/ask", json={"question": Q, "top_k": 2.5}), 422, "invalid_request")


def test_unknown_reader(client: TestClient) -> None:
    err = assert_error(client.post("/ask", json={"question": Q, "reader": "gpt"}), 422, "invalid_request")
    assert "span" in err["message"]


def test_unknown_reader_by_get(client: TestClient) -> None:
    assert_error(client.get("/ask", params={"q": Q, "reader": "gpt"}), 422, "invalid_request")


def test_reader_without_its_model(client: TestClient) -> None:
    # point the pipeline at a QA model folder that does not exist; the message must not name it
    pipeline = client.app.state.service.pipeline  # type: ignore[attr-defined]
    pipeline.settings = pipeline.settings.model_copy(update={"reader_model": "/nonexistent/reader"})
    r = client.post("/ask", json={"question": Q, "reader": "transformers"})
    err = assert_error(r, 503, "unavailable")
    assert "nonexistent" not in err["message"]


def test_unknown_field(client: TestClient) -> None:
    err = assert_error(client.post("/ask", json={"question": Q, "topk": 3}), 422, "invalid_request")
    assert "topk" in err["message"]


# ---------------------------------------------------------------- bodies
def test_body_not_json(client: TestClient) -> None:
    r = client.post("/ask", content=b"{question: hi", headers={"content-type": "application/json"})
    err = assert_error(r, 400, "invalid_json")
    assert "not valid JSON" in err["message"]


def test_body_not_utf8(client: TestClient) -> None:
    r = client.post("/ask", content=b'{"question": "caf\xe9"}', headers={"content-type": "application/json"})
    assert_error(r, 400, "invalid_json")


def test_body_nested_absurdly(client: TestClient) -> None:
    r = client.post("/ask", content=b"[" * 100_000 + b"]" * 100_000, headers={"content-type": "application/json"})
    assert_error(r, 400, "invalid_json")


def test_body_without_json_content_type(client: TestClient) -> None:
    err = assert_error(client.post("/ask", content=b"who?"), 422, "invalid_request")
    assert "application/json" in err["message"]


def test_body_missing(client: TestClient) -> None:
    assert_error(client.post("/ask"), 422, "invalid_request")


def test_body_a_json_array(client: TestClient) -> None:
    assert_error(client.post("/ask", json=[Q]), 422, "invalid_request")


@pytest.fixture(scope="module")
def small_body_client(shared_pipeline: QAPipeline) -> Iterator[TestClient]:
    with make_client(shared_pipeline, api_settings(max_body_bytes=2048)) as c:
        yield c


def test_body_over_the_byte_limit(small_body_client: TestClient) -> None:
    err = assert_error(small_body_client.post("/ask", json={"question": "x" * 4000}), 413, "body_too_large")
    assert "2048 bytes" in err["message"]


def test_streamed_body_over_the_byte_limit(small_body_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        yield b'{"question": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    r = small_body_client.post("/ask", content=chunks(), headers={"content-type": "application/json"})
    assert_error(r, 413, "body_too_large")


def test_body_under_the_byte_limit_passes(small_body_client: TestClient) -> None:
    assert small_body_client.post("/ask", json={"question": Q}).status_code == 200


# ---------------------------------------------------------------- batches
def test_batch_over_the_size_limit(client: TestClient) -> None:
    err = assert_error(client.post("/ask/batch", json={"questions": [Q] * 33}), 422, "batch_too_large")
    assert "limit is 32" in err["message"]


def test_batch_empty(client: TestClient) -> None:
    assert_error(client.post("/ask/batch", json={"questions": []}), 422, "invalid_request")


def test_batch_with_one_blank_question(client: TestClient) -> None:
    assert_error(client.post("/ask/batch", json={"questions": [Q, "  "]}), 422, "invalid_question")


def test_batch_top_k_out_of_range(client: TestClient) -> None:
    assert_error(client.post("/ask/batch", json={"questions": [Q], "top_k": 51}), 422, "invalid_request")


def test_batch_unknown_reader(client: TestClient) -> None:
    assert_error(client.post("/ask/batch", json={"questions": [Q], "reader": "x"}), 422, "invalid_request")


# ---------------------------------------------------------------- documents
@pytest.mark.parametrize("doc_id", ["../etc/passwd", "a/b", "a\\b", "a..b", "..", ".hidden", "a\x00b", "a\nb", "",
                                    "x" * 129, "ünï"])
def test_bad_doc_id_on_post(writable: QAPipeline, doc_id: str) -> None:
    with make_client(writable) as c:
        r = c.post("/documents", json={"doc_id": doc_id, "text": "Some text."})
        assert_error(r, 422, "invalid_document")
    assert sorted(p.name for p in writable.corpus_dir.iterdir()) == sorted(
        f"{a.doc_id}.txt" for a in writable.documents())  # nothing written anywhere


@pytest.mark.parametrize("path", ["a%2Fb", "a..b", "a%00b", "a%0Ab", "..%2F..%2Fetc%2Fpasswd", "sub/x", "%2E%2E"])
def test_bad_doc_id_on_get(client: TestClient, path: str) -> None:
    assert_error(client.get(f"/documents/{path}"), 422, "invalid_document")


@pytest.mark.parametrize("path", ["a%2Fb", "a..b", "a%00b"])
def test_bad_doc_id_on_delete(client: TestClient, path: str) -> None:
    assert_error(client.delete(f"/documents/{path}"), 422, "invalid_document")


def test_unknown_doc_on_get(client: TestClient) -> None:
    assert_error(client.get("/documents/no-such-article"), 404, "document_not_found")


def test_unknown_doc_on_delete(client: TestClient) -> None:
    assert_error(client.delete("/documents/no-such-article"), 404, "document_not_found")


def test_text_over_the_document_limit(client: TestClient, shared_pipeline: QAPipeline) -> None:
    limit = shared_pipeline.settings.max_document_chars
    r = client.post("/documents", json={"doc_id": "huge", "text": "a" * (limit + 1)})
    err = assert_error(r, 413, "document_too_large")
    assert str(limit) in err["message"]


def test_a_title_does_not_count_towards_the_document_limit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.api.conftest import make_client, make_pipeline

    p = make_pipeline(tmp_path, max_document_chars=2000)
    with make_client(p) as c:
        r = c.post("/documents", json={"doc_id": "full", "text": "a " * 1000, "title": "A title"})
        assert r.status_code == 201, r.text
        assert r.json()["chars"] == 2000 and c.get("/documents/full").json()["text"] == "a " * 1000


def test_empty_text(client: TestClient) -> None:
    assert_error(client.post("/documents", json={"doc_id": "blank", "text": "  \n"}), 422, "invalid_document")


def test_text_with_nul(client: TestClient) -> None:
    assert_error(client.post("/documents", json={"doc_id": "nul", "text": "a\x00b"}), 422, "invalid_document")


def test_text_with_a_lone_surrogate(client: TestClient) -> None:
    r = client.post("/documents", content=b'{"doc_id": "s", "text": "Hello \\ud800 there"}',
                    headers={"content-type": "application/json"})
    assert_error(r, 422, "invalid_request")


def test_title_with_control_characters(client: TestClient) -> None:
    r = client.post("/documents", json={"doc_id": "t", "text": "Some text.", "title": "bad\x00title"})
    assert_error(r, 422, "invalid_request")


def test_document_text_missing(client: TestClient) -> None:
    assert_error(client.post("/documents", json={"doc_id": "t"}), 422, "invalid_request")


def test_deleting_the_last_article_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.api.conftest import make_pipeline

    p = make_pipeline(tmp_path)
    for a in p.documents()[1:]:
        p.delete_document(a.doc_id)
    with make_client(p) as c:
        last = p.documents()[0].doc_id
        err = assert_error(c.delete(f"/documents/{last}"), 409, "conflict")
        assert "last article" in err["message"]


# ---------------------------------------------------------------- routing
def test_unknown_endpoint(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404, "not_found")


def test_wrong_method(client: TestClient) -> None:
    assert_error(client.put("/ask", json={"question": Q}), 405, "method_not_allowed")


# ---------------------------------------------------------------- no input reaches the catch-all
WEIRD_JSON: list[Any] = [None, [], "", "question", 0, 1.5, True, {}, {"question": None}, {"question": [Q]},
                         {"question": {"a": 1}}, {"question": Q, "top_k": None}, {"question": Q, "top_k": "3"},
                         {"question": Q, "top_k": True}, {"question": Q, "reader": None}, {"question": Q, "reader": 1},
                         {"questions": None}, {"questions": [None]}, {"questions": "abc"}, {"questions": [Q, 1]},
                         {"doc_id": None, "text": None}, {"doc_id": 1, "text": 2}, {"doc_id": "ok", "text": ["a"]},
                         {"doc_id": "ok", "text": "t", "title": 5}, {"question": "\x00"}, {"question": "\u202e?"},
                         {"question": "¿" * 500}, {"questions": [" "] * 33}]
WEIRD_BODIES: list[bytes] = [b"", b"null", b"{", b"}", b"\xff\xfe", b'{"question": "a"' + b" " * 3000,
                             b'{"question": "a", "question": "b"}', b"\x00", b'{"question": 1e999}',
                             b'{"top_k": NaN, "question": "a"}', b'\xef\xbb\xbf{"question": "a"}']


def test_no_input_produces_a_500(client: TestClient) -> None:
    seen = []
    for method, path in [("POST", "/ask"), ("POST", "/ask/batch"), ("POST", "/documents")]:
        for payload in WEIRD_JSON:
            seen.append((method, path, client.request(method, path, json=payload)))
        for body in WEIRD_BODIES:
            seen.append((method, path, client.request(method, path, content=body,
                                                      headers={"content-type": "application/json"})))
    for q in ["", " ", "\x00", "%", "?" * 600, "Q" * 5000]:
        seen.append(("GET", "/ask", client.get("/ask", params={"q": q, "top_k": "x"})))
        seen.append(("GET", "/ask", client.get("/ask", params={"q": q})))
    for path in ["%", "%ZZ", "%C0%AF", "a" * 500, "...", "a.b.", "-", "_", "CON", "a%20b", "%F0%9F%98%80"]:
        seen.append(("GET", path, client.get(f"/documents/{path}")))
        seen.append(("DELETE", path, client.delete(f"/documents/{path}")))
    for method, path, r in seen:
        assert r.status_code < 500, (method, path, r.status_code, r.text)
        if r.status_code >= 400:
            assert_error(r, r.status_code)


def test_the_catch_all_answers_a_generic_500(shared_pipeline: QAPipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the core ever fails unexpectedly, the client sees no detail of it."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret detail at /work/main/qa/pipeline.py")

    with make_client(shared_pipeline) as c:
        monkeypatch.setattr(shared_pipeline, "ask_batch", broken)
        err = assert_error(c.post("/ask", json={"question": Q}), 500, "internal_error")
        assert "secret" not in err["message"]
        assert c.get("/healthz").status_code == 200  # and the server goes on
