"""Property-based tests on random Unicode: combining marks, emoji, CRLF, NUL, very long lines.

Whatever the text, every offset the product hands out round-trips: ``article.text[start:end] == text``
for chunks, index reloads, reader spans and cited answers; and loading a folder of arbitrary
bytes keeps every readable article exactly and skips the rest, never raising anything else.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from qa.answer import assemble
from qa.chunk import chunk_article
from qa.corpus import load_corpus, make_article
from qa.errors import CorpusError
from qa.index import build_index, load_index, save_index
from qa.types import Chunk, Hit, Reading, Span
from tests.api.conftest import make_client, make_pipeline
from tests.conftest import FakeEmbedder

PROPERTY = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SLOW_PROPERTY = settings(max_examples=25, deadline=None, database=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

_PIECES = st.sampled_from(["\r\n", "\n", "\n\n", "\r", ". ", "! ", "? ", "… ", " ", "\t", "\x00", "\u0301",
                           "\u0308", "e\u0301", "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467",
                           "\U0001f1fa\U0001f1e6", "\u200d", "\u200b", "\u202e", "\u2028", "\u00a0", "\ufeff",
                           "U.S. ", "Mr. ", "“", "”", "’", "Kyiv", "Zürich", "東京", "مرحبا", "2031-03-03",
                           "Medinsky", "the", "talks"])
# A text is pieces, random characters and now and then a very long line without a break.
TEXT = st.lists(st.one_of(_PIECES, st.text(min_size=1, max_size=12), st.text(st.sampled_from("ab "), min_size=1,
                                                                              max_size=4).map(lambda s: s * 700)),
                min_size=1, max_size=60).map("".join)


def _covered(chunks: list[Chunk], n: int) -> list[bool]:
    cover = [False] * n
    for c in chunks:
        for i in range(c.start, c.end):
            cover[i] = True
    return cover


# ---------------------------------------------------------------- chunking
@PROPERTY
@given(text=TEXT, max_tokens=st.sampled_from([16, 40, 254]), overlap=st.sampled_from([0, 4, 12]))
def test_chunks_round_trip_and_cover_every_word(text: str, max_tokens: int, overlap: int) -> None:
    art = make_article("doc", text)
    chunks = chunk_article(art, FakeEmbedder(), max_tokens, overlap)
    for c in chunks:
        assert 0 <= c.start < c.end <= len(text)
        assert art.text[c.start : c.end] == c.text
    starts = [c.start for c in chunks]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)  # always moving forward
    cover = _covered(chunks, len(text))
    for m in re.finditer(r"\S+", text):
        assert all(cover[m.start() : m.end()]), f"word at {m.start()} not in any chunk"


# ---------------------------------------------------------------- index save / load
@SLOW_PROPERTY
@given(texts=st.lists(TEXT.filter(lambda t: t.strip() != ""), min_size=1, max_size=3))
def test_index_reload_keeps_exact_text_and_offsets(texts: list[str]) -> None:
    articles = [make_article(f"d{i}", t) for i, t in enumerate(texts)]
    folder = Path(tempfile.mkdtemp(prefix="qa-prop-"))
    try:
        idx = build_index(articles, FakeEmbedder(), 16, 4, hnsw_min_chunks=10**9)
        save_index(idx, folder)
        back = load_index(folder)
        assert {d: a.text for d, a in back.articles.items()} == {a.doc_id: a.text for a in articles}
        assert back.chunks == idx.chunks
        for c in back.chunks:
            assert back.articles[c.doc_id].text[c.start : c.end] == c.text
    finally:
        shutil.rmtree(folder)


# ---------------------------------------------------------------- corpus loading
_FILE = st.tuples(
    st.sampled_from(["a.txt", "b.md", "c.TXT", "d.bin", "sub/e.txt", ".hidden.txt", "f.txt", "g.md"]),
    st.one_of(st.binary(max_size=300), TEXT.map(lambda t: t.encode("utf-8")),
              TEXT.map(lambda t: t.encode("utf-16")), st.just(b"\xef\xbb\xbfBOM title\r\nbody"), st.just(b"  \n\t")),
)


@PROPERTY
@given(files=st.lists(_FILE, max_size=6, unique_by=lambda f: f[0]))
def test_loading_random_files_keeps_readable_ones_exactly(files: list[tuple[str, bytes]]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="qa-prop-"))
    try:
        expected = {}
        for name, data in files:
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            if name.startswith(".") or path.suffix.lower() not in (".txt", ".md"):
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if text.strip():
                expected[str(Path(name).with_suffix("").as_posix())] = text
        try:
            articles = load_corpus(folder)
        except CorpusError:
            assert not expected
            return
        assert {a.doc_id: a.text for a in articles} == expected
    finally:
        shutil.rmtree(folder)


# ---------------------------------------------------------------- answer assembly
@PROPERTY
@given(text=TEXT, data=st.data())
def test_cited_answers_round_trip(text: str, data: st.DataObject) -> None:
    assume(text.strip())
    art = make_article("doc", text)
    spans = []
    for _ in range(data.draw(st.integers(1, 4))):
        start = data.draw(st.integers(0, len(text) - 1))
        end = data.draw(st.integers(start + 1, min(len(text), start + 40)))
        spans.append(Span("doc", start, end, text[start:end], data.draw(st.floats(0.0, 1.0))))
    hit = Hit(Chunk("doc", 0, len(text), text), 1.0)
    answer = assemble("q?", Reading(spans, 0.1), [hit], {"doc": art}, min_confidence=0.0, max_citations=5)
    if answer.text is None:  # every span normalises to nothing (all whitespace)
        assert all(not s.text.strip() for s in spans)
        return
    assert answer.citations and answer.text == answer.citations[0].text
    for c in answer.citations:
        assert art.text[c.start : c.end] == c.text
        assert art.text[c.context_start : c.context_start + len(c.context)] == c.context
        rel = c.start - c.context_start
        assert c.context[rel : rel + len(c.text)] == c.text


# ---------------------------------------------------------------- reader offsets
@pytest.fixture(scope="module")
def span_reader():  # type: ignore[no-untyped-def]
    from qa.read.span_reader import SpanReader

    reader = SpanReader(FakeEmbedder())
    reader.load()
    return reader


@SLOW_PROPERTY
@given(text=TEXT, question=st.sampled_from(["Who is the lead negotiator?", "When did the talks start?",
                                            "Where were the talks held?", "How many drones?"]))
def test_span_reader_offsets_round_trip(span_reader, text: str, question: str) -> None:  # type: ignore[no-untyped-def]
    assume(text.strip())
    art = make_article("doc", text)
    chunks = chunk_article(art, FakeEmbedder(), 60, 10)
    [reading] = span_reader.read_batch([question], [[Hit(c, 1.0) for c in chunks]])
    for s in reading.spans:
        assert art.text[s.start : s.end] == s.text, (s.start, s.end, s.text)


# ---------------------------------------------------------------- the API keeps text exactly
@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with make_client(make_pipeline(tmp_path_factory.mktemp("prop-api"))) as c:
        yield c


@SLOW_PROPERTY
@given(text=TEXT.filter(lambda t: t.strip() != "" and "\x00" not in t))
def test_written_text_is_served_back_exactly(api: TestClient, text: str) -> None:
    r = api.post("/documents", json={"doc_id": "prop", "text": text})
    assert r.status_code in (200, 201), r.text
    got = api.get("/documents/prop").json()
    assert got["text"] == text and got["chars"] == len(text)
