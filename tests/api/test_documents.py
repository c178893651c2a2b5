"""Listing, reading, adding, replacing and deleting articles over HTTP, and who may write."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from qa.corpus import load_corpus
from qa.index import load_index
from qa.pipeline import QAPipeline
from tests.api.conftest import (
    ZANZIBAR_ID,
    ZANZIBAR_QUESTION,
    ZANZIBAR_TEXT,
    api_settings,
    assert_error,
    make_client,
    make_pipeline,
)

TOKEN = "test-token_0123456789-abcdefghij"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NEW = {"doc_id": ZANZIBAR_ID, "text": ZANZIBAR_TEXT, "title": "Zanzibar summit opens"}


def test_list_documents(client: TestClient, shared_pipeline: QAPipeline) -> None:
    r = client.get("/documents")
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == len(body["documents"]) == len(shared_pipeline.documents())
    first = body["documents"][0]
    art = shared_pipeline.documents()[0]
    assert first == {"doc_id": art.doc_id, "title": art.title, "date": art.date, "source": art.source, "url": art.url,
                     "author": art.author, "chars": len(art.text)}


def test_get_document_has_the_exact_text_and_no_server_path(client: TestClient, shared_pipeline: QAPipeline) -> None:
    art = shared_pipeline.document("003_56e07843aefd4aea")
    r = client.get("/documents/003_56e07843aefd4aea")
    assert r.status_code == 200
    body = r.json()
    assert body["text"] == art.text and body["sha256"] == art.sha256 and body["date"] == "2025-06-02"
    assert "path" not in body and "/tmp/" not in r.text


def test_an_article_from_a_nested_folder_can_be_read_by_its_listed_id(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.api.conftest import make_pipeline

    nested = tmp_path / "corpus" / "regional"
    nested.mkdir(parents=True)
    (nested / "harbour.txt").write_text("The Port Elwin harbour reopened on Tuesday.", encoding="utf-8")
    p = make_pipeline(tmp_path)
    with make_client(p) as c:
        assert "regional/harbour" in [d["doc_id"] for d in c.get("/documents").json()["documents"]]
        r = c.get("/documents/regional/harbour")
        assert r.status_code == 200 and r.json()["text"].startswith("The Port Elwin harbour")
        assert_error(c.get("/documents/regional/other"), 422, "invalid_document")


def test_add_ask_delete_round_trip(writable: QAPipeline) -> None:
    """An article added over HTTP answers its question; deleted, it is gone from list, reads and answers."""
    with make_client(writable) as c:
        before = c.post("/ask", json={"question": ZANZIBAR_QUESTION}).json()
        assert before["answer"] is None

        r = c.post("/documents", json=NEW)
        assert r.status_code == 201, r.text
        assert r.json()["replaced"] is False and r.json()["documents"] == 6
        assert ZANZIBAR_ID in [d["doc_id"] for d in c.get("/documents").json()["documents"]]
        stored = c.get(f"/documents/{ZANZIBAR_ID}").json()
        assert stored["text"] == ZANZIBAR_TEXT  # exactly the text sent: the title is metadata
        assert stored["title"] == "Zanzibar summit opens"

        answer = c.post("/ask", json={"question": ZANZIBAR_QUESTION}).json()
        assert answer["answer"] == "3 March 2031"
        assert answer["citations"][0]["doc_id"] == ZANZIBAR_ID

        r = c.delete(f"/documents/{ZANZIBAR_ID}")
        assert r.status_code == 200 and r.json() == {"doc_id": ZANZIBAR_ID, "deleted": True, "documents": 5,
                                                     "chunks": writable.index.n_chunks}  # type: ignore[union-attr]
        assert_error(c.get(f"/documents/{ZANZIBAR_ID}"), 404, "document_not_found")
        assert ZANZIBAR_ID not in [d["doc_id"] for d in c.get("/documents").json()["documents"]]
        after = c.post("/ask", json={"question": ZANZIBAR_QUESTION}).json()
        assert after["answer"] is None and ZANZIBAR_ID not in after["retrieved"]
    # durable: the corpus folder and the saved index agree
    assert ZANZIBAR_ID not in {a.doc_id for a in load_corpus(writable.corpus_dir)}
    assert ZANZIBAR_ID not in load_index(writable.settings.index_dir).articles


def test_replacing_answers_200_and_the_new_text_answers(writable: QAPipeline) -> None:
    with make_client(writable) as c:
        assert c.post("/documents", json=NEW).status_code == 201
        r = c.post("/documents", json={**NEW, "text": ZANZIBAR_TEXT.replace("3 March 2031", "4 April 2032")})
        assert r.status_code == 200 and r.json()["replaced"] is True and r.json()["documents"] == 6
        writable.reader.answers = {"zanzibar": "4 April 2032"}  # type: ignore[attr-defined]
        assert c.post("/ask", json={"question": ZANZIBAR_QUESTION}).json()["answer"] == "4 April 2032"
    assert "4 April 2032" in (writable.corpus_dir / f"{ZANZIBAR_ID}.json").read_text(encoding="utf-8")


def test_written_article_is_on_disk_when_the_answer_comes(writable: QAPipeline) -> None:
    with make_client(writable) as c:
        assert c.post("/documents", json=NEW).status_code == 201
    assert (writable.corpus_dir / f"{ZANZIBAR_ID}.json").is_file()  # text with a title: a record
    assert ZANZIBAR_ID in load_index(writable.settings.index_dir).articles


# ---------------------------------------------------------------- auth
@pytest.fixture
def token_client(writable: QAPipeline):  # type: ignore[no-untyped-def]
    with make_client(writable, api_settings(api_token=SecretStr(TOKEN)), bind_host="0.0.0.0") as c:
        yield c


@pytest.mark.parametrize("headers", [{}, {"Authorization": b"Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": b"Bearer"}, {"Authorization": f"Bearer {TOKEN}x"},
                                     {"Authorization": f"Bearer {TOKEN[:-1]}"}, {"Authorization": f"bearer  {TOKEN} x"},
                                     {"Authorization": f"Bearer {TOKEN}\u00e9".encode()},
                                     {"Authorization": "Bearer \u00e9\u00e9".encode()}])
def test_write_without_the_right_token_is_401(token_client: TestClient, headers: dict[str, str | bytes]) -> None:
    r = token_client.post("/documents", json=NEW, headers=headers)
    assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in r.text


def test_delete_without_the_token_is_401(token_client: TestClient) -> None:
    r = token_client.delete("/documents/003_56e07843aefd4aea")
    assert_error(r, 401, "unauthorized")
    assert token_client.get("/documents/003_56e07843aefd4aea").status_code == 200


def test_write_with_the_token_succeeds(token_client: TestClient) -> None:
    assert token_client.post("/documents", json=NEW, headers=AUTH).status_code == 201
    assert token_client.delete(f"/documents/{ZANZIBAR_ID}", headers=AUTH).status_code == 200


def test_reading_needs_no_token(token_client: TestClient) -> None:
    assert token_client.get("/documents").status_code == 200
    assert token_client.get("/ask", params={"q": ZANZIBAR_QUESTION}).status_code == 200
    assert token_client.post("/ask", json={"question": ZANZIBAR_QUESTION}).status_code == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org"])
def test_public_bind_without_a_token_refuses_writes(writable: QAPipeline, host: str) -> None:
    with make_client(writable, api_settings(api_token=None), bind_host=host) as c:
        err = assert_error(c.post("/documents", json=NEW), 403, "writes_disabled")
        assert "QA_API_TOKEN" in err["message"]
        assert_error(c.delete("/documents/003_56e07843aefd4aea"), 403, "writes_disabled")
        assert c.get("/documents").json()["count"] == 5


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_bind_without_a_token_allows_writes(writable: QAPipeline, host: str) -> None:
    with make_client(writable, api_settings(api_token=None), bind_host=host) as c:
        assert c.post("/documents", json=NEW).status_code == 201


def test_loopback_bind_with_a_token_still_needs_it(writable: QAPipeline) -> None:
    with make_client(writable, api_settings(api_token=SecretStr(TOKEN)), bind_host="127.0.0.1") as c:
        assert_error(c.post("/documents", json=NEW), 401, "unauthorized")


def test_several_workers_refuse_writes(writable: QAPipeline) -> None:
    with make_client(writable, api_settings(api_token=SecretStr(TOKEN)), workers=2) as c:
        err = assert_error(c.post("/documents", json=NEW, headers=AUTH), 403, "writes_disabled")
        assert "--workers 1" in err["message"]


def test_several_workers_write_to_a_shared_store(tmp_path: Path) -> None:
    """On Milvus every worker writes to the one store, as replicas do: no 403 for several workers."""
    p = make_pipeline(tmp_path, store="milvus", milvus_uri=str(tmp_path / "m.db"))
    with make_client(p, api_settings(api_token=SecretStr(TOKEN)), workers=2) as c:
        assert_error(c.post("/documents", json=NEW), 401, "unauthorized")  # the token still holds
        r = c.post("/documents", json=NEW, headers=AUTH)
        assert r.status_code == 201, r.text
        answer = c.post("/ask", json={"question": ZANZIBAR_QUESTION}).json()
        assert answer["answer"] == "3 March 2031" and answer["citations"][0]["doc_id"] == ZANZIBAR_ID
    assert not (p.corpus_dir / f"{ZANZIBAR_ID}.json").exists()  # the store alone holds it


def test_blank_token_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="api_token must not be blank"):
        api_settings(api_token=SecretStr("  "))


def test_token_a_client_cannot_send_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="api_token may contain only") as e:
        api_settings(api_token=SecretStr("s\u00e9cret with spaces"))
    assert "s\u00e9cret" not in str(e.value)


def test_token_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from qa.api.config import ApiSettings

    monkeypatch.setenv("QA_API_TOKEN", "from-env")
    monkeypatch.setenv("QA_LOG_QUESTIONS", "false")
    s = ApiSettings()
    assert s.api_token is not None and s.api_token.get_secret_value() == "from-env"
    assert s.log_questions is False and "from-env" not in repr(s)


def test_the_article_list_comes_in_pages_that_cover_every_article_once(client: TestClient,
                                                                      shared_pipeline: QAPipeline) -> None:
    every = [a.doc_id for a in shared_pipeline.documents()]
    seen: list[str] = []
    cursor = None
    for _ in range(len(every) + 1):
        r = client.get("/documents", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200 and r.json()["count"] == len(every)
        page = [d["doc_id"] for d in r.json()["documents"]]
        assert 1 <= len(page) <= 2
        seen += page
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == every
    assert client.get("/documents", params={"limit": 0}).status_code == 422
    assert client.get("/documents", params={"cursor": every[-1]}).json()["documents"] == []


def test_put_is_idempotent_and_if_match_stops_a_lost_update(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.api.conftest import make_pipeline

    p = make_pipeline(tmp_path)
    with make_client(p) as c:
        body = {"text": "The Zanzibar summit opened on 3 March 2031.", "title": "Zanzibar summit"}
        first = c.put("/documents/zanzibar", json=body)
        assert first.status_code == 201, first.text
        etag = first.headers["ETag"]
        assert etag == f'"{first.json()["sha256"]}"' == c.get("/documents/zanzibar").headers["ETag"]
        again = c.put("/documents/zanzibar", json=body)
        assert again.status_code == 200 and again.json()["sha256"] == first.json()["sha256"]
        assert again.json()["documents"] == first.json()["documents"]  # one article, as after one PUT
        # a writer who read version 1 updates it; a second writer who also read version 1 is refused
        ok = c.put("/documents/zanzibar", json={"text": "Moved to 4 March 2031."}, headers={"If-Match": etag})
        assert ok.status_code == 200
        late = c.put("/documents/zanzibar", json={"text": "Moved to 5 March 2031."}, headers={"If-Match": etag})
        assert late.status_code == 412 and late.json()["error"]["code"] == "precondition_failed"
        assert "4 March" in p.document("zanzibar").text  # the refused write changed nothing
        assert c.post("/documents", json={"doc_id": "nobody", "text": "x y z"},
                      headers={"If-Match": "*"}).status_code == 412  # '*': it must exist
        assert c.put("/documents/zanzibar", json={"text": "Final."}, headers={"If-Match": "*"}).status_code == 200
        assert c.put("/documents/zanzibar", json={"doc_id": "x", "text": "y"}).status_code == 422  # no doc_id in body


def test_a_title_is_metadata_and_changing_it_is_a_new_version(writable: QAPipeline) -> None:
    with make_client(writable) as c:
        first = c.put(f"/documents/{ZANZIBAR_ID}", json={"text": ZANZIBAR_TEXT, "title": "Zanzibar summit opens"})
        assert first.status_code == 201
        answer = c.post("/ask", json={"question": ZANZIBAR_QUESTION}).json()
        cite = answer["citations"][0]
        assert cite["doc_id"] == ZANZIBAR_ID and cite["title"] == "Zanzibar summit opens"
        text = c.get(f"/documents/{ZANZIBAR_ID}").json()["text"]
        assert text == ZANZIBAR_TEXT and text[cite["start"] : cite["end"]] == cite["text"] == "3 March 2031"
        retitled = c.put(f"/documents/{ZANZIBAR_ID}", json={"text": ZANZIBAR_TEXT, "title": "Summit, day one"},
                         headers={"If-Match": first.headers["ETag"]})
        assert retitled.status_code == 200 and retitled.headers["ETag"] != first.headers["ETag"]
        assert c.get(f"/documents/{ZANZIBAR_ID}").json()["title"] == "Summit, day one"
        # With other metadata too (the converted path): a change of metadata alone is written, not "unchanged".
        body = {"text": ZANZIBAR_TEXT, "title": "Summit, day one", "source": "Harbour Gazette"}
        one = c.put(f"/documents/{ZANZIBAR_ID}", json=body)
        two = c.put(f"/documents/{ZANZIBAR_ID}", json={**body, "source": "Island Times"})
        assert one.headers["ETag"] != two.headers["ETag"] != retitled.headers["ETag"]
        stored = c.get(f"/documents/{ZANZIBAR_ID}").json()
        assert (stored["source"], stored["text"]) == ("Island Times", ZANZIBAR_TEXT)
        assert c.put(f"/documents/{ZANZIBAR_ID}", json={**body, "source": "Island Times"}).headers["ETag"] == \
            two.headers["ETag"]  # the same write again: the same version
