"""The keyword side ranks alike on both stores: Milvus's BM25 reads the chunk's terms as the local
BM25 makes them (plurals stripped, stopwords dropped) with the same k1 and b, so the same
questions get the same BM25 scores and the same fused rankings. And a store in the old layout
(BM25 over the raw text) is refused as stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qa.bm25 import K1
from qa.errors import IndexStale
from qa.index import EMPTY_TOKEN, bm25_tokens
from qa.pipeline import QAPipeline
from qa.store.milvus import MANIFEST_PROPERTY, MilvusStore, sparse_terms
from tests.conftest import FakeEmbedder
from tests.store.conftest import store_settings
from tests.test_index import NoReader

# Plurals and stopwords on purpose: "minors" is the term "minor" locally, "hers" is "her" (a
# stopword only before the strip), and the last question has no term left.
ARTICLES = {
    "kherson": "A minor from Kherson came home. The minor, a boy of twelve, was met by his aunt.",
    "talks": ("Delegates in Istanbul discussed prisoners, minors and the bodies of soldiers, and the list of "
              "children that Ukraine handed over. The talks ended after an hour."),
    "ferry": "Ferries to Pemba ran twice a day; the ferry company said the harbour was hers to reopen.",
    "census": "The quokka census counted eleven thousand quokkas on Rottnest, more than in any year before.",
}
QUESTIONS = [
    "What about the minors?",
    "Which minor came home from Kherson?",
    "Whose harbour was it? Hers.",
    "How many quokkas were counted in the census?",
    "ferries and prisoners",
    "Who was it?",
]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> dict[str, QAPipeline]:
    """The same four articles in a local store and in Milvus Lite (fake embedder)."""
    root = tmp_path_factory.mktemp("bm25")
    corpus = root / "corpus"
    corpus.mkdir()
    for doc_id, text in ARTICLES.items():
        (corpus / f"{doc_id}.txt").write_text(text, encoding="utf-8")
    out = {}
    for kind in ("local", "milvus-lite"):
        p = QAPipeline(store_settings(kind, root / kind, corpus, request), embedder=FakeEmbedder(), reader=NoReader())
        p.load()
        out[kind] = p
    return out


def _local_bm25(p: QAPipeline, question: str) -> list[tuple[str, int, float]]:
    view = p.index
    rows, scores = view.bm25_search(bm25_tokens(question) or [EMPTY_TOKEN], 100)  # type: ignore[union-attr]
    chunks = [view.chunk(int(r)) for r in rows]  # type: ignore[union-attr]
    # Milvus scores with tf * (k1 + 1) in the numerator, the local (Lucene) formula without: one factor
    return [(c.doc_id, c.start, float(s) * (K1 + 1)) for c, s in zip(chunks, scores, strict=True)]


def _milvus_bm25(p: QAPipeline, question: str) -> list[tuple[str, int, float]]:
    store = p.store
    assert isinstance(store, MilvusStore)
    res = store.client().search(store.chunks_name, data=[sparse_terms(question)], anns_field="sparse",
                                search_params={"metric_type": "BM25"}, limit=100, output_fields=["doc_id", "start"])
    # Milvus Lite returns a BM25 search's scores negated (smaller is better there); a server, as they are
    return [(r["entity"]["doc_id"], int(r["entity"]["start"]), abs(float(r["distance"]))) for r in res[0]]


@pytest.mark.parametrize("question", QUESTIONS)
def test_both_stores_score_the_same_bm25_terms_alike(stores: dict[str, QAPipeline], question: str) -> None:
    local, milvus = _local_bm25(stores["local"], question), _milvus_bm25(stores["milvus-lite"], question)
    assert [(d, s) for d, s, _ in milvus] == [(d, s) for d, s, _ in local]
    assert [x for _, _, x in milvus] == pytest.approx([x for _, _, x in local], rel=1e-5)


def test_plurals_and_stopwords_match_as_locally(stores: dict[str, QAPipeline]) -> None:
    # "minors" finds the chunk that says "minor" twice first, as the local BM25 does
    assert _milvus_bm25(stores["milvus-lite"], "What about the minors?")[0][0] == "kherson"
    assert _local_bm25(stores["local"], "What about the minors?")[0][0] == "kherson"
    # a question of stopwords only matches no chunk on either side (retrieval is then dense only)
    assert _milvus_bm25(stores["milvus-lite"], "Who was it?") == [] == _local_bm25(stores["local"], "Who was it?")


@pytest.mark.parametrize("question", QUESTIONS)
def test_both_stores_rank_every_chunk_alike(stores: dict[str, QAPipeline], question: str) -> None:
    local, milvus = (stores[k].search(question, 50) for k in ("local", "milvus-lite"))
    assert [(h.chunk.doc_id, h.chunk.start, h.chunk.end) for h in milvus] == \
        [(h.chunk.doc_id, h.chunk.start, h.chunk.end) for h in local]
    assert [h.score for h in milvus] == pytest.approx([h.score for h in local], rel=1e-5)


def test_a_store_in_the_old_layout_is_refused_as_stale(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "kherson.txt").write_text(ARTICLES["kherson"], encoding="utf-8")
    p = QAPipeline(store_settings("milvus-lite", tmp_path, corpus, request), embedder=FakeEmbedder(),
                   reader=NoReader())
    p.load()
    store = p.store
    assert isinstance(store, MilvusStore)
    props = store.client().describe_collection(store.chunks_name)["properties"]
    old = {**json.loads(props[MANIFEST_PROPERTY]), "format_version": 1}
    store.client().alter_collection_properties(store.chunks_name, properties={MANIFEST_PROPERTY: json.dumps(old)})
    with pytest.raises(IndexStale, match=r"layout 1 .* run `qa index build"):
        store.open()
    # a pipeline on it is refused too (never rebuilt behind the back of other replicas)
    with pytest.raises(IndexStale, match="qa index build"):
        QAPipeline(p.settings, embedder=FakeEmbedder(), reader=NoReader()).load()
