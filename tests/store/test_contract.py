"""One contract for every store (qa/store/): local (FAISS + BM25 + journal), Milvus Lite embedded
in a file, and a `milvus-lite server` on a loopback port. Each test runs on all three."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from qa.chunk import chunk_article
from qa.corpus import load_corpus
from qa.errors import DocumentNotFound, IndexMissing, IndexStale
from qa.ingest import Document
from qa.pipeline import QAPipeline, make_filters
from qa.types import Filters
from tests.conftest import FakeEmbedder

Make = Callable[..., QAPipeline]
ZANZIBAR = ("Zanzibar harbour reopened on 3 March 2031 after the storm. The harbour master, Amina Said, said "
            "ferries to Dar es Salaam would run twice a day.")
UNICODE = ("Café “quotes” e\u0301t\u00e9 🎉🎉 naïve façade.\r\nSecond line: Zürich — Kraków, 東京.\n\n"
           "Third paragraph mentions the quokka sanctuary twice: quokka.")


def _loaded(make: Make) -> QAPipeline:
    p = make()
    p.load()
    return p


def _offsets_round_trip(p: QAPipeline, question: str, k: int = 50) -> list[str]:
    hits = p.search(question, k)
    assert hits
    for h in hits:
        assert p.document(h.chunk.doc_id).text[h.chunk.start : h.chunk.end] == h.chunk.text
    return [h.chunk.doc_id for h in hits]


def test_build_fills_the_store_with_every_article_and_chunk_exactly(make: Make, seeds_copy: Path) -> None:
    p = _loaded(make)
    articles = load_corpus(seeds_copy)
    view = p.store.open()
    assert sorted(view.articles) == sorted(a.doc_id for a in articles)
    for a in articles:
        got = view.articles[a.doc_id]
        assert (got.text, got.title, got.date, got.sha256) == (a.text, a.title, a.date, a.sha256)
    # the same chunker on every backend: the same number of chunks
    emb = FakeEmbedder()
    assert view.n_chunks == sum(len(chunk_article(a, emb, 60, 10)) for a in articles)
    assert view.base_manifest.embed_model == "fake-embedder" and view.base_manifest.dim == 64
    assert set(_offsets_round_trip(p, "Istanbul talks ceasefire")) <= set(view.articles)


def test_an_empty_store_is_missing_and_says_what_to_run(make: Make) -> None:
    with pytest.raises(IndexMissing, match="qa index build"):
        make().store.open()


def test_add_replace_delete(make: Make) -> None:
    p = _loaded(make)
    n0, docs0 = p.index.n_chunks, len(p.index.articles)  # type: ignore[union-attr]
    article, replaced = p.add_document("zanzibar", ZANZIBAR)
    assert not replaced and p.document("zanzibar").text == article.text
    assert len(p.index.articles) == docs0 + 1 and p.index.n_chunks > n0  # type: ignore[union-attr]
    assert p.search("Zanzibar harbour ferries", 1)[0].chunk.doc_id == "zanzibar"

    _, replaced = p.add_document("zanzibar", "Pemba island's clove harvest doubled in 2031.")
    assert replaced and "Pemba" in p.document("zanzibar").text
    assert len(p.index.articles) == docs0 + 1  # type: ignore[union-attr]
    assert not any("ferries" in h.chunk.text for h in p.search("Zanzibar harbour ferries", 50))
    assert p.search("Pemba clove harvest", 1)[0].chunk.doc_id == "zanzibar"

    p.delete_document("zanzibar")
    assert "zanzibar" not in p.index.articles  # type: ignore[union-attr]
    assert (len(p.index.articles), p.index.n_chunks) == (docs0, n0)  # type: ignore[union-attr]
    assert all(h.chunk.doc_id != "zanzibar" for h in p.search("Pemba clove harvest", 50))
    with pytest.raises(DocumentNotFound):
        p.document("zanzibar")
    with pytest.raises(DocumentNotFound):
        p.delete_document("zanzibar")


def test_offsets_and_text_survive_any_unicode_and_long_articles(make: Make) -> None:
    p = _loaded(make)
    p.add_document("unicode", UNICODE)
    assert p.document("unicode").text == UNICODE
    assert "unicode" in _offsets_round_trip(p, "quokka sanctuary")
    # longer than one Milvus VARCHAR (65,535 bytes): stored in parts, read back exactly
    long_text = "Opening line of a long report.\n" + " ".join(f"paragraph{i} 🎉 of the long report"
                                                            for i in range(4000))
    assert len(long_text.encode()) > 130_000
    p.add_document("long", long_text)
    assert p.document("long").text == long_text
    assert "long" in _offsets_round_trip(p, "paragraph3999 long report")


def test_hybrid_search_fuses_dense_and_keyword_rankings(make: Make) -> None:
    p = _loaded(make)
    p.add_document("quokka", "The quokka census on Rottnest counted eleven thousand animals.")
    hits = p.search("quokka census Rottnest", 5)
    assert hits[0].chunk.doc_id == "quokka"
    emb = FakeEmbedder()
    q = emb.embed("quokka census Rottnest")
    rrf_k = p.settings.rrf_k
    for rank, h in enumerate(hits):
        assert h.rank == rank
        # the cosine of question and chunk, and a fused reciprocal-rank score
        assert h.dense == pytest.approx(float(np.dot(q, emb.embed(h.chunk.text))), abs=1e-5)
        assert 0 < h.score <= 2 / (rrf_k + 1) + 1e-6
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # top of both rankings: 1/(k+1) from each
    assert hits[0].score == pytest.approx(2 / (rrf_k + 1), rel=1e-4)


def _dated(p: QAPipeline) -> None:
    for doc_id, date, source in (("june", "2031-06-02", "Reuters"), ("july", "2031-07-09", "AP"),
                                 ("undated", None, "Reuters")):
        p.add_converted(doc_id, Document(text=f"The harbour report of {doc_id}: ferries, storms and cargo.",
                                         sha256=doc_id * 8, date=date, source=source, title=f"Report {doc_id}"))


@pytest.mark.parametrize(("since", "until", "source", "doc_ids", "expected"), [
    ("2031-06-01", None, None, None, {"june", "july"}),
    (None, "2031-06-30", None, None, {"june"}),
    ("2031-06-03", "2031-07-09", None, None, {"july"}),
    (None, None, "reuters", None, {"june", "undated"}),
    ("2031-01-01", None, "REUTERS", None, {"june"}),
    (None, None, None, ["july", "undated"], {"july", "undated"}),
    (None, None, None, [], set()),
    (None, None, "nobody", None, set()),
])
def test_filters_restrict_retrieval_to_the_matching_articles(make: Make, since: str | None, until: str | None,
                                                             source: str | None, doc_ids: list[str] | None,
                                                             expected: set[str]) -> None:
    p = _loaded(make)
    _dated(p)
    filters = make_filters(since, until, source, doc_ids)
    assert p.index is not None
    matching = {d for d in p.index.articles if filters.matches(p.index.articles[d])}  # the seeds are 2025's
    assert matching & {"june", "july", "undated"} == expected
    got = {h.chunk.doc_id for h in p.search("harbour report ferries storms cargo", 100, filters)}
    assert got == matching
    # the top k fills from the matching articles, not from the best of all then cut
    top = p.search("Istanbul talks", 1, filters)
    assert len(top) == min(1, len(matching)) and {h.chunk.doc_id for h in top} <= matching


def test_filters_keep_every_matching_chunk_reachable(make: Make) -> None:
    p = _loaded(make)
    assert p.index is not None
    doc_id = sorted(p.index.articles)[2]
    hits = p.search("the", 200, Filters(doc_ids=frozenset([doc_id])))
    n = sum(1 for _ in chunk_article(p.index.articles[doc_id], FakeEmbedder(), 60, 10))
    assert len(hits) == n and {h.chunk.doc_id for h in hits} == {doc_id}


def test_another_process_sees_writes_after_a_refresh(make: Make) -> None:
    writer, reader = _loaded(make), _loaded(make)
    writer.add_document("zanzibar", ZANZIBAR)
    reader.refresh()  # local: reloads the changed folder; Milvus: its views read the store as it is
    assert reader.document("zanzibar").text == writer.document("zanzibar").text
    assert reader.search("Zanzibar harbour ferries", 1)[0].chunk.doc_id == "zanzibar"
    writer.delete_document("zanzibar")
    reader.refresh()
    with pytest.raises(DocumentNotFound):
        reader.document("zanzibar")


def test_a_reopened_store_holds_what_was_written(make: Make) -> None:
    p = _loaded(make)
    p.add_document("zanzibar", ZANZIBAR)
    p.delete_document(sorted(p.index.articles)[0])  # type: ignore[union-attr]
    ids = sorted(p.index.articles)  # type: ignore[union-attr]
    again = _loaded(make)
    assert sorted(again.index.articles) == ids  # type: ignore[union-attr]
    assert again.document("zanzibar").text == ZANZIBAR


class OtherEmbedder(FakeEmbedder):
    name = "another-embedder"


def test_a_store_built_with_another_model_is_stale(make: Make) -> None:
    _loaded(make)
    other = make(embedder=OtherEmbedder())
    with pytest.raises(IndexStale, match="fake-embedder"):
        other.load(rebuild=False)
