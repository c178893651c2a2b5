"""Incremental writes: the journal, tombstones, replay, compaction, snapshots and our BM25."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from qa.bm25 import BM25, RowView
from qa.corpus import load_corpus
from qa.errors import IndexCorrupt
from qa.index import (
    JOURNAL,
    bm25_tokens,
    build_index,
    current_version,
    load_index,
    manifest_with_journal,
    staleness,
)
from qa.journal import DeleteRecord, PutRecord, encode, read_journal
from qa.pipeline import QAPipeline
from qa.settings import Settings

from .conftest import FakeEmbedder
from .test_index import NoReader

QUESTIONS = ["When did the Zanzibar summit open?", "Who leads the Russian delegation?",
             "Where were the talks held?", "harbour reopened ferry", "ceasefire prisoners exchange"]
ZANZIBAR = ("The Zanzibar summit opened on 3 March 2031 in Stone Town, the negotiators said. "
            "Delegates from twelve countries attended. The harbour of Stone Town reopened for ferries.")


def _pipeline(tmp_path: Path, corpus: Path, **settings: object) -> QAPipeline:
    s = Settings(index_dir=tmp_path / "idx", corpus_dir=corpus, chunk_tokens=60, chunk_overlap_tokens=10,
                 **settings)  # type: ignore[arg-type]
    p = QAPipeline(s, embedder=FakeEmbedder(), reader=NoReader())
    p.load(corpus)
    return p


def _results(p: QAPipeline, k: int = 8) -> list[list[tuple[str, int, int]]]:
    return [[(h.chunk.doc_id, h.chunk.start, h.chunk.end) for h in p.search(q, k)] for q in QUESTIONS]


def _scores(p: QAPipeline, k: int = 8) -> list[list[tuple[str, int, float, float]]]:
    return [[(h.chunk.doc_id, h.chunk.start, h.score, h.dense) for h in p.search(q, k)] for q in QUESTIONS]


def _some_writes(p: QAPipeline) -> None:
    p.add_document("zanzibar", ZANZIBAR)
    p.add_document("note-1", "The ferry to Pemba reopened after the ceasefire. Prisoners were exchanged at dawn.")
    p.add_document("zanzibar", ZANZIBAR.replace("3 March", "4 March") + " A second day of talks followed.")
    p.delete_document("001_a191f6331583f074")


def test_add_replace_delete_go_to_the_journal_not_a_new_version(tmp_path: Path, seeds_copy: Path) -> None:
    p = _pipeline(tmp_path, seeds_copy)
    version = current_version(tmp_path / "idx")
    emb = p.embedder
    assert isinstance(emb, FakeEmbedder)
    before = emb.embedded

    p.add_document("zanzibar", ZANZIBAR)
    # only the new article was embedded, and no new version was saved
    assert emb.embedded - before == len([c for c in p.index.chunks if c.doc_id == "zanzibar"])  # type: ignore[union-attr]
    hits = p.search("When did the Zanzibar summit open?", 3)
    assert hits[0].chunk.doc_id == "zanzibar" and "3 March 2031" in hits[0].chunk.text
    assert current_version(tmp_path / "idx") == version
    assert (version / JOURNAL).stat().st_size > 0

    p.add_document("zanzibar", "The Zanzibar summit was postponed to 9 May 2032.")
    texts = [c.text for c in p.index.chunks if c.doc_id == "zanzibar"]  # type: ignore[union-attr]
    assert texts == ["The Zanzibar summit was postponed to 9 May 2032."]
    for h in p.search("When did the Zanzibar summit open?", 30):
        assert "3 March" not in h.chunk.text

    p.delete_document("zanzibar")
    assert "zanzibar" not in p.index.articles  # type: ignore[union-attr]
    assert all(h.chunk.doc_id != "zanzibar" for h in p.search("Zanzibar summit postponed", 30))
    assert [type(r).__name__ for r in read_journal(version / JOURNAL)] == ["PutRecord", "PutRecord", "DeleteRecord"]


def test_replay_after_reload_matches_memory_and_a_full_rebuild(tmp_path: Path, seeds_copy: Path) -> None:
    p = _pipeline(tmp_path, seeds_copy)
    _some_writes(p)
    in_memory = _scores(p)

    reloaded = QAPipeline(p.settings, embedder=FakeEmbedder(), reader=NoReader())
    reloaded.load(seeds_copy, rebuild=False)  # up to date after replay: no rebuild needed
    assert _scores(reloaded) == in_memory  # the same rows, the same scores
    assert reloaded.index.manifest.fingerprints == {a.doc_id: a.sha256 for a in load_corpus(seeds_copy)}  # type: ignore[union-attr]

    rebuilt = _pipeline(tmp_path / "fresh", seeds_copy)  # every article indexed from scratch
    assert current_version(tmp_path / "fresh" / "idx") != current_version(tmp_path / "idx")
    assert _results(rebuilt) == _results(p)
    for a, b in zip(_scores(rebuilt), in_memory, strict=True):  # BM25 statistics are exact, not approximated
        assert [x[:2] for x in a] == [x[:2] for x in b]
        assert np.allclose([x[2:] for x in a], [x[2:] for x in b])


def test_staleness_sees_the_journal(tmp_path: Path, seeds_copy: Path) -> None:
    p = _pipeline(tmp_path, seeds_copy)
    _some_writes(p)
    fingerprints = {a.doc_id: a.sha256 for a in load_corpus(seeds_copy)}
    loaded = load_index(tmp_path / "idx")
    assert staleness(loaded.manifest, fingerprints, "fake-embedder", 60, 10) is None
    status = manifest_with_journal(tmp_path / "idx")  # what `qa index status` reads, without vectors
    assert status.fingerprints == fingerprints and status.n_chunks == loaded.n_chunks == p.index.n_chunks  # type: ignore[union-attr]


def test_a_torn_last_record_is_ignored_with_a_warning(tmp_path: Path, seeds_copy: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    p = _pipeline(tmp_path, seeds_copy)
    p.add_document("zanzibar", ZANZIBAR)
    journal = current_version(tmp_path / "idx") / JOURNAL
    whole = journal.read_bytes()
    p.add_document("note-1", "The ferry to Pemba reopened after the ceasefire.")
    torn = journal.read_bytes()
    for cut in (len(whole) + 7, len(whole) + 30, len(torn) - 1):  # a crash mid-append: a prefix of the record
        journal.write_bytes(torn[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="qa.journal"):
            index = load_index(tmp_path / "idx")
        assert "incomplete write" in caplog.text and "journal.log" in caplog.text
        assert "zanzibar" in index.articles and "note-1" not in index.articles
    journal.write_bytes(torn[:-1])
    # the article file is durable: the next start finds the index stale for it and indexes it
    messages: list[str] = []
    p2 = QAPipeline(p.settings, embedder=FakeEmbedder(), reader=NoReader())
    p2.load(seeds_copy, notify=messages.append)
    assert "stale" in messages[0] and "note-1" in messages[0]
    assert p2.search("ferry Pemba ceasefire", 1)[0].chunk.doc_id == "note-1"


def test_a_damaged_record_followed_by_others_is_corrupt(tmp_path: Path, seeds_copy: Path) -> None:
    p = _pipeline(tmp_path, seeds_copy)
    p.add_document("zanzibar", ZANZIBAR)
    p.add_document("note-1", "The ferry to Pemba reopened after the ceasefire.")
    journal = current_version(tmp_path / "idx") / JOURNAL
    data = bytearray(journal.read_bytes())
    data[40] ^= 0x01  # inside the first record
    journal.write_bytes(bytes(data))
    with pytest.raises(IndexCorrupt, match=r"journal\.log: record 1 .*checksum.*rebuild"):
        load_index(tmp_path / "idx")
    journal.write_bytes(b"garbage!" * 10 + bytes(data))
    with pytest.raises(IndexCorrupt, match=r"journal\.log has no record at byte 0"):
        load_index(tmp_path / "idx")
    messages: list[str] = []
    p.load(seeds_copy, notify=messages.append)  # rebuilt from the article files
    assert "journal.log" in messages[0] and "rebuilding" in messages[0]
    assert {"zanzibar", "note-1"} <= set(p.index.articles)  # type: ignore[union-attr]


def test_a_record_that_does_not_fit_the_index_is_corrupt(tmp_path: Path, seeds_copy: Path) -> None:
    _pipeline(tmp_path, seeds_copy)
    journal = current_version(tmp_path / "idx") / JOURNAL
    journal.write_bytes(encode(DeleteRecord("no-such-article")))
    with pytest.raises(IndexCorrupt, match=r"journal\.log: record 1 does not fit"):
        load_index(tmp_path / "idx")
    wrong_dim = PutRecord("x", "Some text.", "Some text.", None, "0" * 64, "", [(0, 10)], np.ones((1, 3), np.float32))
    journal.write_bytes(encode(wrong_dim))
    with pytest.raises(IndexCorrupt, match="dimension 3"):
        load_index(tmp_path / "idx")


def test_compaction_saves_a_fresh_version_with_the_same_results(tmp_path: Path, seeds_copy: Path) -> None:
    p = _pipeline(tmp_path, seeds_copy, journal_compact_min_chunks=0, journal_compact_fraction=10.0)
    _some_writes(p)  # under the bound: journal only
    first = current_version(tmp_path / "idx")
    before = _scores(p)
    index = p.index
    assert index is not None
    # a bound the journal is over and the deleted rows are not: saved as it is, tombstones included
    p.settings.journal_compact_fraction = (index.n_deleted + 1) / index.n_rows
    assert index.store.journal_rows > p.settings.journal_compact_fraction * index.store.base_rows
    p.add_document("note-2", "A short note about the Zanzibar ferry timetable.")
    p.wait_for_compaction()
    second = current_version(tmp_path / "idx")
    assert second != first and not first.exists() and not (second / JOURNAL).exists()
    assert p.index.store.journal_rows == 0  # type: ignore[union-attr]
    after = _scores(p)
    reloaded = load_index(tmp_path / "idx")
    assert reloaded.n_chunks == p.index.n_chunks and reloaded.n_deleted == p.index.n_deleted > 0  # type: ignore[union-attr]
    p.delete_document("note-2")
    assert _scores(p) == before  # deleted rows kept as tombstones through the save
    p2 = QAPipeline(p.settings, embedder=FakeEmbedder(), reader=NoReader())
    p2.load(seeds_copy, rebuild=False)
    assert _scores(p2) == before
    assert after != before


def test_compaction_rebuilds_when_many_rows_are_deleted(tmp_path: Path, seeds_copy: Path) -> None:
    p = _pipeline(tmp_path, seeds_copy, journal_compact_min_chunks=0, journal_compact_fraction=0.3)
    n = p.index.n_rows  # type: ignore[union-attr]
    for d in sorted(p.index.articles)[:3]:  # type: ignore[union-attr]
        p.delete_document(d)
        p.wait_for_compaction()
    # the deletions crossed the bound: rebuilt without the deleted rows
    assert p.index.n_deleted == 0 and p.index.n_rows < n  # type: ignore[union-attr]
    assert load_index(tmp_path / "idx").n_rows == p.index.n_rows  # type: ignore[union-attr]


def test_search_never_returns_a_deleted_chunk_and_stays_full(tmp_path: Path, seeds_copy: Path) -> None:
    p = _pipeline(tmp_path, seeds_copy, hnsw_min_chunks=10**9)
    for i in range(40):
        p.add_document(f"note-{i}", f"Note {i}: the harbour of Elwin{i} reopened. Ferries to Pemba resumed on day {i}.")
    for i in range(0, 40, 4):
        p.add_document(f"note-{i}", f"Note {i} was withdrawn; the Zanzibar ferry timetable is unchanged.")
    for i in range(1, 40, 2):
        p.delete_document(f"note-{i}")
    index = p.index
    assert index is not None and index.n_deleted >= 30
    live = {(c.doc_id, c.start, c.end) for c in index.chunks}
    for q in [*QUESTIONS, "harbour Elwin3 reopened ferries Pemba"]:
        for k in (5, 30, 50):
            hits = p.search(q, k)
            assert len(hits) == min(k, index.n_chunks)
            assert {(h.chunk.doc_id, h.chunk.start, h.chunk.end) for h in hits} <= live
            assert all(index.articles[h.chunk.doc_id].text[h.chunk.start : h.chunk.end] == h.chunk.text for h in hits)


def test_hnsw_index_takes_writes_and_filters_deleted_rows(tmp_path: Path, seeds_copy: Path) -> None:
    p = _pipeline(tmp_path, seeds_copy, hnsw_min_chunks=1)
    assert p.index.manifest.index_type == "hnsw"  # type: ignore[union-attr]
    p.add_document("zanzibar", ZANZIBAR)
    p.add_document("zanzibar", "The Zanzibar summit was postponed to 9 May 2032.")
    hits = p.search("When was the Zanzibar summit?", 50)
    assert len(hits) == 50
    assert [h.chunk.text for h in hits if h.chunk.doc_id == "zanzibar"] == [
        "The Zanzibar summit was postponed to 9 May 2032."]
    reloaded = QAPipeline(p.settings, embedder=FakeEmbedder(), reader=NoReader())
    reloaded.load(seeds_copy, rebuild=False)
    assert _results(reloaded) == _results(p)


def test_an_old_snapshot_sees_neither_half_of_a_later_write(tmp_path: Path, seeds_copy: Path) -> None:
    p = _pipeline(tmp_path, seeds_copy)
    p.add_document("zanzibar", ZANZIBAR)
    old_retriever = p.retriever
    assert old_retriever is not None
    old = old_retriever.retrieve("When did the Zanzibar summit open?", 30)
    p.add_document("zanzibar", "The Zanzibar summit was postponed to 9 May 2032.")
    p.delete_document("002_2b81b22c40bf866c")
    # the snapshot taken before the writes answers exactly as before them
    assert old_retriever.retrieve("When did the Zanzibar summit open?", 30) == old
    assert "3 March 2031" in old_retriever.index.articles["zanzibar"].text
    assert "002_2b81b22c40bf866c" in old_retriever.index.articles
    new = p.search("When did the Zanzibar summit open?", 30)
    assert "002_2b81b22c40bf866c" not in {h.chunk.doc_id for h in new}


def test_questions_during_writes_always_see_one_whole_snapshot(tmp_path: Path, seeds_copy: Path) -> None:
    p = _pipeline(tmp_path, seeds_copy, hnsw_min_chunks=10**9)
    stop = threading.Event()
    problems: list[str] = []
    checked = [0]

    def ask() -> None:
        while not stop.is_set():
            retriever = p.retriever
            assert retriever is not None
            index = retriever.index
            hits = retriever.retrieve("Zanzibar summit harbour ferry version", 12)
            if len(hits) != min(12, index.n_chunks):
                problems.append(f"{len(hits)} hits of {index.n_chunks}")
            for h in hits:
                art = index.articles.get(h.chunk.doc_id)
                if art is None or art.text[h.chunk.start : h.chunk.end] != h.chunk.text:
                    problems.append(f"{h.chunk.doc_id} {h.chunk.start} is not in its snapshot")
            checked[0] += 1

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(30):
            p.add_document("zanzibar", f"Zanzibar summit version {i}. " + "The harbour ferry sailed. " * (i % 5 + 1))
            if i % 3 == 0:
                p.add_document(f"extra-{i}", f"Extra {i}: the Zanzibar harbour ferry schedule, version {i}.")
            if i % 3 == 2:
                p.delete_document(f"extra-{i - 2}")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not problems, problems[:5]
    assert checked[0] > 10


def test_our_bm25_scores_as_bm25s_does(tmp_path: Path, seeds_copy: Path) -> None:
    import bm25s

    index = build_index(load_corpus(seeds_copy), FakeEmbedder(), 60, 10, hnsw_min_chunks=10**9)
    tokens = [bm25_tokens(c.text) or ["\x00empty"] for c in index.chunks]
    ours = BM25.build(tokens)
    theirs = bm25s.BM25()
    theirs.index(tokens, show_progress=False)
    view = RowView(len(tokens), None, len(tokens), sum(len(t) for t in tokens))
    for q in QUESTIONS:
        qt = [t for t in bm25_tokens(q) if t in theirs.vocab_dict]
        if not qt:
            continue
        rows, scores = ours.score(qt, view)
        expected = theirs.get_scores(qt)
        dense = np.zeros(len(tokens))
        dense[rows] = scores
        assert np.allclose(dense, expected, rtol=1e-5, atol=1e-6), q
        assert dense.max() > 0


@pytest.mark.parametrize("ratio", [0, 10**9])  # sum by sorting the postings, or in an array of every row
def test_bm25_grown_by_writes_scores_as_one_built_at_once(ratio: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import qa.bm25

    monkeypatch.setattr(qa.bm25, "DENSE_ACCUMULATE_RATIO", ratio)
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(40)]
    docs = [[words[j] for j in rng.integers(0, 40, int(rng.integers(1, 12)))] for _ in range(200)]
    grown = BM25.build(docs[:50])
    for i in range(50, 200, 7):
        grown.add(docs[i : i + 7])
    once = BM25.build(docs)
    alive = rng.random(200) > 0.3
    for a in (None, alive):
        n_live = 200 if a is None else int(a.sum())
        lens = np.array([len(d) for d in docs])
        view = RowView(200, a, n_live, int(lens.sum() if a is None else lens[a].sum()))
        for q in (["w1"], ["w2", "w3", "w2"], ["w5", "w39", "nope"]):
            r1, s1 = grown.top_k(q, 10, view)
            r2, s2 = once.top_k(q, 10, view)
            assert r1.tolist() == r2.tolist() and s1.tolist() == s2.tolist()
            if a is not None:
                assert a[r1].all()
