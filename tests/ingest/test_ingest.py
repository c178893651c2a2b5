"""Converters, a mixed corpus folder, `qa add` of files, folders, URLs and feeds (against a server
on loopback), metadata on citations, filters inside retrieval, relative dates."""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from qa.corpus import load_corpus
from qa.errors import IngestError
from qa.ingest import convert
from qa.ingest.add import add_items
from qa.ingest.fetch import FetchLimits, documents_from_url, url_doc_id
from qa.pipeline import make_filters
from tests.api.conftest import ScriptedReader, make_client, make_pipeline
from tests.ingest.fixtures import PAGE_TEXT, PDF_LINES, RECORDS, jsonl_archive, make_pdf, news_page, rss_feed


# ---------------------------------------------------------------- converters
def test_a_news_page_gives_its_main_text_and_metadata_without_boilerplate() -> None:
    doc = convert(news_page().encode(), "page.html")[0]
    for p in PAGE_TEXT:
        assert p in doc.text
    for junk in ("ADVERTISEMENT", "Sport", "Zbigniew", "Cookie settings", "Privacy policy"):
        assert junk not in doc.text, junk
    assert (doc.title, doc.date, doc.author, doc.source, doc.url) == (
        "Gdynia harbour gets a new crane", "2025-03-04", "Anna Nowak", "Baltic Times", "https://baltic.example/crane")


def test_a_pdf_gives_its_text_layer_and_a_scan_is_refused_by_name() -> None:
    doc = convert(make_pdf(PDF_LINES), "report.pdf")[0]
    assert all(line in doc.text for line in PDF_LINES)
    assert (doc.title, doc.author, doc.date) == ("Rail report", "Jan Kowal", "2025-04-09")
    with pytest.raises(IngestError, match=r"scan\.pdf: the PDF has no text layer"):
        convert(make_pdf(None), "scan.pdf")
    with pytest.raises(IngestError, match=r"junk\.pdf: not a readable PDF"):
        convert(b"%PDF-1.4 this is not a PDF", "junk.pdf")


def test_a_jsonl_archive_keeps_good_records_and_names_bad_lines() -> None:
    docs = convert(jsonl_archive(), "archive.jsonl")
    assert [d.key for d in docs] == ["kyiv-1", "lviv-2"]
    assert (docs[0].title, docs[0].date, docs[0].source, docs[0].url, docs[0].author) == (
        "Kyiv metro extends hours", "2025-05-20", "Kyiv Post", "https://kyiv.example/metro", "O. Shevchenko")
    assert docs[0].problems == ["archive.jsonl: line 2: not JSON (Expecting ',' delimiter at column 44)",
                                'archive.jsonl: line 4: no "text" (a non-empty string)']
    assert [d.key for d in convert(json.dumps(RECORDS).encode(), "list.json")] == ["kyiv-1", "lviv-2"]
    with pytest.raises(IngestError, match=r"empty\.jsonl: no readable record"):
        convert(b'{"title": "no text"}\n', "empty.jsonl")
    with pytest.raises(IngestError, match=r"page\.html: no article text"):
        convert(b"<html><head><title>t</title></head><body><script>var x = 1;</script></body></html>", "page.html")


# ---------------------------------------------------------------- a folder of any mix
def _mixed_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "crane.html").write_text(news_page(), encoding="utf-8")
    (root / "tram.pdf").write_bytes(make_pdf(PDF_LINES))
    (root / "scan.pdf").write_bytes(make_pdf(None))
    (root / "archive.jsonl").write_bytes(jsonl_archive())
    (root / "note.txt").write_text("Note\nThe Vistula ferry resumed service on 2 May 2025.", encoding="utf-8")
    return root


def test_a_folder_of_any_mix_loads_every_article_with_metadata(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        arts = {a.doc_id: a for a in load_corpus(_mixed_folder(tmp_path / "c"))}
    assert sorted(arts) == ["archive/kyiv-1", "archive/lviv-2", "crane", "note", "tram"]
    assert "scan.pdf" in caplog.text and "no text layer" in caplog.text and "line 2" in caplog.text
    assert (arts["crane"].source, arts["crane"].date, arts["crane"].url) == (
        "Baltic Times", "2025-03-04", "https://baltic.example/crane")
    assert arts["archive/kyiv-1"].source == "Kyiv Post" and arts["tram"].title == "Rail report"
    page = (tmp_path / "c" / "crane.html").read_bytes()
    import hashlib

    assert arts["crane"].sha256 == hashlib.sha256(page).hexdigest()  # the original's fingerprint


def test_citations_of_a_mixed_folder_slice_the_stored_text_and_carry_metadata(tmp_path: Path) -> None:
    corpus = _mixed_folder(tmp_path / "corpus")
    p = make_pipeline(tmp_path, reader=ScriptedReader({"crane": "Rostock", "tram": "410 million zloty"}))
    p.load(corpus)
    for question, doc_id in (("Where was the crane built?", "crane"), ("What did the tram line cost?", "tram")):
        a = p.ask(question, filters=make_filters(doc_ids=[doc_id]))
        assert a.text is not None, question
        c = a.citations[0]
        art = p.index.articles[c.doc_id]  # type: ignore[union-attr]
        assert art.text[c.start : c.end] == c.text and c.title == art.title and c.date == art.date
    crane = p.ask("Where was the crane built?", filters=make_filters(doc_ids=["crane"])).to_dict()
    cite = crane["citations"][0]  # type: ignore[index]
    assert (cite["source"], cite["url"], cite["date"]) == ("Baltic Times", "https://baltic.example/crane",
                                                            "2025-03-04")


# ---------------------------------------------------------------- filters
def test_a_filtered_question_never_cites_outside_the_filter_and_keeps_top_k_full(tmp_path: Path) -> None:
    corpus = _mixed_folder(tmp_path / "corpus")
    p = make_pipeline(tmp_path, reader=ScriptedReader({"opened": "Friday", "metro": "1 a.m."}))
    p.load(corpus)
    cases = [
        (make_filters(since="2025-05-01"), {"archive/kyiv-1", "archive/lviv-2"}),
        (make_filters(until="2025-04-30"), {"crane", "tram"}),
        (make_filters(source="kyiv post"), {"archive/kyiv-1"}),
        (make_filters(since="2025-01-01", until="2025-06-30", source="Baltic Times"), {"crane"}),
        (make_filters(doc_ids=["note", "tram"]), {"note", "tram"}),
    ]
    for filters, allowed in cases:
        for q in ("What opened?", "When does the metro run until?", "What did the crane cost?"):
            hits = p.search(q, 10, filters)
            assert hits and {h.chunk.doc_id for h in hits} <= allowed, (filters, q)
            chunks = [c for c in p.index.chunks if c.doc_id in allowed]  # type: ignore[union-attr]
            assert len(hits) == min(10, len(chunks))  # filled from the allowed articles
            a = p.ask(q, top_k=3, filters=filters)
            assert {c.doc_id for c in a.citations} <= allowed and set(a.retrieved) <= allowed
    assert p.search("anything", 5, make_filters(since="2030-01-01")) == []
    with pytest.raises(Exception, match="not a date"):
        make_filters(since="the day after tomorrow's yesterday's moon")


def test_the_api_filters_and_returns_citation_metadata(tmp_path: Path) -> None:
    corpus = _mixed_folder(tmp_path / "corpus")
    p = make_pipeline(tmp_path, reader=ScriptedReader({"opened": "300 publishers"}))
    p.load(corpus)
    with make_client(p) as c:
        r = c.post("/ask", json={"question": "What opened?", "filters": {"source": "Lviv Herald"}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["answer"] == "300 publishers" and set(body["retrieved"]) == {"archive/lviv-2"}
        cite = body["citations"][0]
        assert (cite["title"], cite["date"], cite["source"]) == ("Lviv opens a book fair", "2025-09-12", "Lviv Herald")
        bad = c.post("/ask", json={"question": "What opened?", "filters": {"since": "not a date"}})
        assert bad.status_code == 422 and "not a date" in bad.json()["error"]["message"]
        listed = {d["doc_id"]: d for d in c.get("/documents").json()["documents"]}
        assert listed["crane"]["source"] == "Baltic Times" and listed["crane"]["url"] == "https://baltic.example/crane"


# ---------------------------------------------------------------- relative dates
@pytest.mark.parametrize(("expr", "sentence", "want"), [
    ("Monday", "The delegations gathered on Monday.", ("2025-06-02", "2025-06-02")),
    ("on Monday", "", ("2025-06-02", "2025-06-02")),
    ("yesterday", "", ("2025-06-01", "2025-06-01")),
    ("last Friday", "", ("2025-05-30", "2025-05-30")),
    ("on Thursday", "Talks will resume on Thursday.", ("2025-06-05", "2025-06-05")),
    ("next week", "", ("2025-06-09", "2025-06-15")),
    ("earlier this week", "", ("2025-06-02", "2025-06-02")),
    ("last month", "", ("2025-05-01", "2025-05-31")),
    ("1 December", "", ("2025-12-01", "2025-12-01")),  # no year: the article's year, not the last 1 December
    ("2 June 2025", "", None),  # absolute: nothing to resolve
    ("40", "", None),
    ("Vladimir Medinsky", "", None),
])
def test_relative_dates_resolve_against_the_article_date(expr: str, sentence: str,
                                                         want: tuple[str, str] | None) -> None:
    from qa.dates import resolve

    r = resolve(expr, "2025-06-02", sentence)
    assert (None if r is None else (r.start.isoformat(), r.end.isoformat())) == want
    assert resolve(expr, None, sentence) is None  # an undated article resolves nothing


def test_a_relative_answer_carries_its_resolved_date_and_the_span_is_unchanged(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "talks.txt").write_text("Talks\ndate 2025-06-02\nThe delegations gathered in Istanbul on Monday.",
                                      encoding="utf-8")
    (corpus / "other.txt").write_text("Other\nThe fair opens next week in Lviv, 2025-09-12.", encoding="utf-8")
    p = make_pipeline(tmp_path, reader=ScriptedReader({"gather": "Monday", "fair": "next week"}))
    p.load(corpus)
    a = p.ask("On what day did the delegations gather?")
    c = a.citations[0]
    assert c.text == "Monday" and p.index.articles[c.doc_id].text[c.start : c.end] == "Monday"  # type: ignore[union-attr]
    assert c.resolved_date == "2025-06-02" and a.to_dict()["citations"][0]["resolved_date"] == "2025-06-02"  # type: ignore[index]
    fair = p.ask("When does the fair open?").citations[0]
    assert (fair.resolved_start, fair.resolved_end, fair.resolved_date) == ("2025-09-15", "2025-09-21", None)
    assert p.ask("Who gathered on Monday?").citations == [] or all(
        x.resolved_date is None for x in p.ask("Who gathered on Monday?").citations)
    from qa.cli import format_answer

    assert format_answer(a, colour=False).startswith("Monday (2 June 2025)")


# ---------------------------------------------------------------- URLs and feeds on loopback
class _Site(http.server.BaseHTTPRequestHandler):
    pages: ClassVar[dict[str, tuple[int, str, bytes]]] = {}

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(2)
        if self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
            return
        status, ctype, body = self.pages.get(self.path, (404, "text/plain", b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a client that stopped at its limit
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    _Site.pages = {
        "/news/crane.html": (200, "text/html; charset=utf-8", news_page(url=f"{base}/news/crane.html").encode()),
        "/news/tram.pdf": (200, "application/pdf", make_pdf(PDF_LINES)),
        "/feed.xml": (200, "application/rss+xml",
                      rss_feed([f"{base}/news/crane.html", f"{base}/news/tram.pdf", f"{base}/gone"])),
        "/broken-feed.xml": (200, "application/rss+xml", b"this is not xml at all"),
        "/error": (500, "text/plain", b"boom"),
        "/big": (200, "text/html", b"<p>" + b"x" * 5000 + b"</p>"),
        "/image.png": (200, "image/png", b"\x89PNG...."),
        "/slow": (200, "text/html", news_page().encode()),
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()


def test_urls_and_feeds_are_fetched_and_every_failure_is_named(site: str) -> None:
    limits = FetchLimits(timeout_s=0.5, max_bytes=4000, max_redirects=3)
    found, problems = documents_from_url(f"{site}/news/crane.html", limits)
    assert found[0][0] == "127.0.0.1-news-crane" and found[0][1].url == f"{site}/news/crane.html"
    found, problems = documents_from_url(f"{site}/feed.xml", limits)
    assert [doc.url for _, doc in found] == [f"{site}/news/crane.html", f"{site}/news/tram.pdf"]
    assert found[1][1].source == "Baltic Times feed"  # a PDF item takes the feed's outlet
    assert len(problems) == 1 and "/gone: the server answered 404" in problems[0]
    for path, why in (("/error", "answered 500"), ("/loop", "redirected more than 3 times"),
                      ("/big", "over the limit"), ("/image.png", "is not a page, PDF or feed"),
                      ("/slow", "no answer within 0.5s"), ("/broken-feed.xml", "not an RSS/Atom feed")):
        with pytest.raises(IngestError, match=why) as e:
            documents_from_url(f"{site}{path}", limits)
        assert str(e.value).startswith(f"{site}{path}: ")
    assert url_doc_id("https://www.example.com/world/2025/06/02/talks.html") == "example.com-world-2025-06-02-talks"


def test_qa_add_adds_files_folders_and_urls_re_adding_changes_nothing(tmp_path: Path, site: str) -> None:
    p = make_pipeline(tmp_path, reader=ScriptedReader({"crane": "Rostock"}))
    folder = tmp_path / "incoming"
    _mixed_folder(folder)
    said: list[str] = []
    report = add_items(p, [str(folder), f"{site}/feed.xml", str(tmp_path / "missing.html")], said.append,
                       limits=FetchLimits(timeout_s=2))
    assert set(report.added) >= {"crane", "tram", "note", "archive-kyiv-1", "archive-lviv-2", "127.0.0.1-news-crane",
                                 "127.0.0.1-news-tram.pdf"}
    assert any("scan.pdf" in f for f in report.failed) and any("missing.html: no such file" in f
                                                               for f in report.failed)
    assert any("/gone" in f for f in report.failed) and all(line.startswith("error: ") for line in said)
    stored = json.loads((tmp_path / "corpus" / "crane.json").read_text(encoding="utf-8"))
    assert stored["source"] == "Baltic Times" and stored["sha256"] == p.index.articles["crane"].sha256  # type: ignore[union-attr]
    version = p.index.generation  # type: ignore[union-attr]
    again = add_items(p, [str(folder / "crane.html")], said.append)
    assert again.unchanged == ["crane"] and p.index.generation == version  # type: ignore[union-attr]
    (folder / "crane.html").write_text(news_page(title="Gdynia harbour gets two cranes"), encoding="utf-8")
    assert add_items(p, [str(folder / "crane.html")], said.append).replaced == ["crane"]
    assert p.index.articles["crane"].title == "Gdynia harbour gets two cranes"  # type: ignore[union-attr]
    rebuilt = make_pipeline(tmp_path / "again", reader=ScriptedReader())
    rebuilt.load(tmp_path / "corpus")  # the folder rebuilds to the same articles and metadata
    assert rebuilt.index.articles["crane"].source == "Baltic Times"  # type: ignore[union-attr]
    assert rebuilt.index.articles["crane"].sha256 == p.index.articles["crane"].sha256  # type: ignore[union-attr]


def test_post_documents_takes_html_or_a_url_with_metadata(tmp_path: Path, site: str) -> None:
    p = make_pipeline(tmp_path, reader=ScriptedReader({"crane": "Rostock"}))
    with make_client(p) as c:
        r = c.post("/documents", json={"doc_id": "crane-page", "html": news_page(), "source": "BT"})
        assert r.status_code == 201, r.text
        assert (r.json()["title"], r.json()["source"], r.json()["date"]) == ("Gdynia harbour gets a new crane", "BT",
                                                                             "2025-03-04")
        r = c.post("/documents", json={"doc_id": "tram-pdf", "url": f"{site}/news/tram.pdf"})
        assert r.status_code == 201, r.text
        assert r.json()["url"] == f"{site}/news/tram.pdf" and r.json()["title"] == "Rail report"
        r = c.post("/documents", json={"doc_id": "gone", "url": f"{site}/gone"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "not_ingestible"
        assert "answered 404" in r.json()["error"]["message"]
        r = c.post("/documents", json={"doc_id": "meta", "text": "The ferry runs daily.", "date": "4 March 2025",
                                       "source": "Port news"})
        assert r.status_code == 201 and r.json()["date"] == "2025-03-04" and r.json()["source"] == "Port news"
        assert c.post("/documents", json={"doc_id": "x", "text": "a", "html": "<p>b</p>"}).status_code == 422
        assert c.post("/documents", json={"doc_id": "x"}).status_code == 422
        assert c.get("/documents/tram-pdf").json()["text"].startswith("Rail report: the Poznan tram line")


def test_a_file_over_the_size_limit_is_named_and_the_others_still_load(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    folder = _mixed_folder(tmp_path / "c")
    with caplog.at_level(logging.WARNING):
        arts = {a.doc_id for a in load_corpus(folder, max_file_bytes=1000)}
    assert "crane" not in arts and "note" in arts  # the page is 1.3 kB
    assert "crane.html" in caplog.text and "over the limit of 1,000 (QA_MAX_FILE_BYTES)" in caplog.text
    p = make_pipeline(tmp_path, reader=ScriptedReader())
    report = add_items(p, [str(folder / "crane.html"), str(folder / "note.txt")], lambda _: None, max_file_bytes=1000)
    assert report.added == ["note"] and "over the limit" in report.failed[0]


def test_qa_add_of_files_already_in_the_corpus_folder_duplicates_nothing(tmp_path: Path) -> None:
    corpus = _mixed_folder(tmp_path / "corpus")
    p = make_pipeline(tmp_path, reader=ScriptedReader())
    p.load(corpus)
    before = sorted(x.name for x in corpus.iterdir())
    report = add_items(p, [str(corpus)], lambda _: None)
    assert report.added == [] and len(report.in_corpus) == 5 and "indexed in place" in report.summary()
    assert sorted(x.name for x in corpus.iterdir()) == before
