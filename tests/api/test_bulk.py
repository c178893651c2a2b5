"""POST /documents/bulk: articles written in order through the single write, each answered on its own."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from pydantic import SecretStr

import qa.documents
from qa.corpus import load_corpus
from qa.index import load_index
from tests.api.conftest import ZANZIBAR_ID, ZANZIBAR_QUESTION, ZANZIBAR_TEXT, api_settings, assert_error, make_client
from tests.api.conftest import make_pipeline as _make_pipeline

PEMBA = "The ferry to Pemba reopened on 4 March 2031, the harbour master said."


def test_each_article_is_answered_in_order_and_the_written_ones_are_durable(tmp_path: Path) -> None:
    p = _make_pipeline(tmp_path)
    seed = sorted(p.index.articles)[0]  # type: ignore[union-attr]
    docs = [
        {"doc_id": ZANZIBAR_ID, "text": ZANZIBAR_TEXT},                                 # added
        {"doc_id": "../etc", "text": "Not a safe id."},                                 # refused by the core
        {"doc_id": "pemba", "text": PEMBA, "source": "Harbour Gazette", "date": "2031-03-04"},  # with metadata
        {"doc_id": "both", "text": "x", "html": "<p>x</p>"},                            # refused at the edge
        {"doc_id": "huge", "text": "a" * (p.settings.max_document_chars + 1)},          # over the limit
        {"doc_id": seed, "text": "Replaced seed.", "if_match": "0" * 64},               # stale If-Match
        {"doc_id": ZANZIBAR_ID, "text": ZANZIBAR_TEXT + " Delegates left on Friday."},  # the same id again
    ]
    with make_client(p) as c:
        r = c.post("/documents/bulk", json={"documents": docs})
        assert r.status_code == 200, r.text
        body = r.json()
        got = [(x["index"], x["doc_id"], x["status"], x["http_status"], (x["error"] or {}).get("code"))
               for x in body["results"]]
        assert got == [
            (0, ZANZIBAR_ID, "written", 201, None),
            (1, "../etc", "error", 422, "invalid_document"),
            (2, "pemba", "written", 201, None),
            (3, "both", "error", 422, "invalid_request"),
            (4, "huge", "error", 413, "document_too_large"),
            (5, seed, "error", 412, "precondition_failed"),
            (6, ZANZIBAR_ID, "written", 200, None),
        ]
        assert (body["written"], body["failed"]) == (3, 4)
        assert body["documents"] == 7 and body["chunks"] == p.index.n_chunks  # type: ignore[union-attr]
        zanzibar = c.get(f"/documents/{ZANZIBAR_ID}")
        assert zanzibar.json()["text"].endswith("Delegates left on Friday.")  # applied in order: the later one won
        assert zanzibar.headers["etag"] == f'"{body["results"][6]["sha256"]}"'
        assert c.get("/documents/pemba").json()["source"] == "Harbour Gazette"
        assert c.get(f"/documents/{seed}").json()["text"] != "Replaced seed."
        assert c.post("/ask", json={"question": ZANZIBAR_QUESTION}).json()["answer"] == "3 March 2031"
    # On disk as acknowledged: the index as saved and the corpus folder as a rebuild reads it.
    on_disk = load_index(p.settings.index_dir).articles
    folder = {a.doc_id: a for a in load_corpus(p.corpus_dir)}
    for doc_id in (ZANZIBAR_ID, "pemba"):
        assert on_disk[doc_id].text == folder[doc_id].text == p.index.articles[doc_id].text  # type: ignore[union-attr]
    assert not {"huge", "both", "../etc"} & set(folder)


def test_a_failed_disk_write_loses_no_other_article(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _make_pipeline(tmp_path)
    real = qa.documents.write_atomic

    def full_disk_for_b(path: Path, data: bytes) -> None:
        if path.stem == "b":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(qa.documents, "write_atomic", full_disk_for_b)
    docs = [{"doc_id": d, "text": f"Article {d}: the harbour of Port {d.upper()}elwin reopened."} for d in "abc"]
    with make_client(p) as c:
        r = c.post("/documents/bulk", json={"documents": docs})
    assert r.status_code == 200, r.text
    statuses = [(x["doc_id"], x["http_status"], (x["error"] or {}).get("code")) for x in r.json()["results"]]
    assert statuses == [("a", 201, None), ("b", 507, "insufficient_storage"), ("c", 201, None)]
    assert "No space" not in r.text and "/tmp/" not in r.text
    monkeypatch.undo()
    fresh = _make_pipeline(tmp_path)  # a restart: loads what is on disk
    assert {"a", "c"} <= set(fresh.index.articles) and "b" not in fresh.index.articles  # type: ignore[union-attr]


def test_bulk_writes_follow_the_write_rules(tmp_path: Path) -> None:
    p = _make_pipeline(tmp_path)
    body = {"documents": [{"doc_id": ZANZIBAR_ID, "text": ZANZIBAR_TEXT}]}
    with make_client(p, bind_host="0.0.0.0") as c:
        assert_error(c.post("/documents/bulk", json=body), 403, "writes_disabled")
    token = "bulk-token-0123456789abcdef"
    with make_client(p, api_settings(api_token=SecretStr(token)), bind_host="0.0.0.0") as c:
        assert_error(c.post("/documents/bulk", json=body), 401, "unauthorized")
        assert ZANZIBAR_ID not in p.index.articles  # type: ignore[union-attr]
        r = c.post("/documents/bulk", json=body, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["written"] == 1


def test_a_bulk_over_its_limits_or_out_of_shape_writes_nothing(tmp_path: Path) -> None:
    p = _make_pipeline(tmp_path)
    before = set(p.index.articles)  # type: ignore[union-attr]
    docs = [{"doc_id": f"n{i}", "text": f"Note {i}."} for i in range(3)]
    with make_client(p, api_settings(max_bulk_documents=2)) as c:
        err = assert_error(c.post("/documents/bulk", json={"documents": docs}), 422, "bulk_too_large")
        assert "QA_MAX_BULK_DOCUMENTS" in err["message"] and "2" in err["message"]
        assert_error(c.post("/documents/bulk", json={"documents": []}), 422, "invalid_request")
        bad = [docs[0], {"doc_id": "n1", "text": "x", "titel": "typo"}]
        err = assert_error(c.post("/documents/bulk", json={"documents": bad}), 422, "invalid_request")
        assert "documents[1].titel" in err["message"]
    assert set(p.index.articles) == before  # type: ignore[union-attr]
