from pathlib import Path

import pytest

from qa.corpus import load_corpus
from qa.errors import IndexCorrupt, IndexMissing, IndexStale
from qa.index import build_index, current_version, load_index, save_index, staleness
from qa.pipeline import QAPipeline
from qa.settings import Settings
from qa.types import Hit, Reading

from .conftest import FakeEmbedder


class NoReader:
    name = "none"

    def load(self) -> None:
        pass

    def read_batch(self, questions: list[str], hits: list[list[Hit]]) -> list[Reading]:
        return [Reading([], 1.0) for _ in questions]

    def read(self, question: str, hits: list[Hit]) -> Reading:
        return self.read_batch([question], [hits])[0]


def _pipeline(tmp_path: Path, corpus: Path, emb: FakeEmbedder | None = None) -> QAPipeline:
    s = Settings(index_dir=tmp_path / "idx", corpus_dir=corpus, chunk_tokens=60, chunk_overlap_tokens=10)
    return QAPipeline(s, embedder=emb or FakeEmbedder(), reader=NoReader())


def test_build_save_load_round_trip(tmp_path: Path, seeds_copy: Path) -> None:
    e = FakeEmbedder()
    arts = load_corpus(seeds_copy)
    idx = build_index(arts, e, 60, 10, hnsw_min_chunks=10**9)
    save_index(idx, tmp_path / "i")
    back = load_index(tmp_path / "i")
    assert back.chunks == idx.chunks
    assert back.manifest.fingerprints == {a.doc_id: a.sha256 for a in arts}
    assert back.manifest.index_type == "flat"
    for c in back.chunks:
        assert back.articles[c.doc_id].text[c.start : c.end] == c.text


def test_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IndexMissing, match="qa index build"):
        load_index(tmp_path)


def test_stale_index_is_rebuilt_after_an_article_changes(tmp_path: Path, seeds_copy: Path) -> None:
    emb = FakeEmbedder()
    p = _pipeline(tmp_path, seeds_copy, emb)
    messages: list[str] = []
    p.load(seeds_copy, notify=messages.append)
    assert "no index yet" in messages[0]
    first = current_version(tmp_path / "idx")
    embedded_first = emb.embedded

    target = seeds_copy / "002_2b81b22c40bf866c.txt"
    target.write_text(
        target.read_text(encoding="utf-8") + "\nA new sentence about the Zanzibar summit.", encoding="utf-8"
    )
    messages.clear()
    p.load(seeds_copy, notify=messages.append)
    assert "stale" in messages[0] and "002_2b81b22c40bf866c" in messages[0]
    assert current_version(tmp_path / "idx") != first
    assert any("Zanzibar" in c.text for c in p.index.chunks)  # type: ignore[union-attr]
    # only the changed article was embedded again
    assert emb.embedded - embedded_first < embedded_first / 2

    with pytest.raises(IndexStale, match="qa index build"):
        target.write_text("Changed again.", encoding="utf-8")
        p.ensure_index(seeds_copy, rebuild=False)


def test_staleness_reasons() -> None:
    from qa.index import Manifest

    m = Manifest("m", 4, 60, 10, "flat", {"a": "1", "b": "2"}, 3)
    assert staleness(m, {"a": "1", "b": "2"}, "m", 60, 10) is None
    assert "added: c" in (staleness(m, {"a": "1", "b": "2", "c": "3"}, "m", 60, 10) or "")
    assert "removed: b" in (staleness(m, {"a": "1"}, "m", 60, 10) or "")
    assert "changed: a" in (staleness(m, {"a": "9", "b": "2"}, "m", 60, 10) or "")
    assert "embedding model" in (staleness(m, {"a": "1", "b": "2"}, "other", 60, 10) or "")


@pytest.mark.parametrize(
    "victim", ["manifest.json", "chunks.npz", "vectors.faiss", "articles.jsonl", "bm25/postings.npz", "bm25/vocab.json"]
)
@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_corrupt_index_file_is_named_then_rebuilt(tmp_path: Path, seeds_copy: Path, victim: str, damage: str) -> None:
    p = _pipeline(tmp_path, seeds_copy)
    p.load(seeds_copy)
    path = current_version(tmp_path / "idx") / victim
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else bytes(b ^ 0x5A for b in data))
    with pytest.raises(IndexCorrupt) as info:
        load_index(tmp_path / "idx")
    msg = str(info.value)
    assert "idx/v-" in msg and ("rebuild" in msg or "qa index build" in msg)
    messages: list[str] = []
    p.load(seeds_copy, notify=messages.append)
    assert "rebuilding" in messages[0]
    assert load_index(tmp_path / "idx").n_chunks == p.index.n_chunks  # type: ignore[union-attr]


def test_garbled_current_pointer(tmp_path: Path, seeds_copy: Path) -> None:
    p = _pipeline(tmp_path, seeds_copy)
    p.load(seeds_copy)
    (tmp_path / "idx" / "CURRENT").write_text("../../etc")
    with pytest.raises(IndexCorrupt, match="CURRENT"):
        load_index(tmp_path / "idx")


def test_crash_during_save_keeps_previous_index(
    tmp_path: Path, seeds_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = _pipeline(tmp_path, seeds_copy)
    p.load(seeds_copy)
    before = current_version(tmp_path / "idx")
    import faiss

    def boom(*a: object, **k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(faiss, "write_index", boom)
    arts = load_corpus(seeds_copy)[:2]
    with pytest.raises(OSError, match="No space"):
        p.build(arts)
    assert current_version(tmp_path / "idx") == before
    assert len(load_index(tmp_path / "idx").articles) == 5
    assert not any(x.name.startswith(".tmp") for x in (tmp_path / "idx").iterdir())


def test_the_manifest_records_the_corpus_folder_and_finds_it_after_a_move(
    tmp_path: Path, seeds_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from qa.errors import CorpusError

    monkeypatch.delenv("QA_CORPUS_DIR", raising=False)
    home = tmp_path / "checkout"
    home.mkdir()
    shutil.copytree(seeds_copy, home / "articles")
    p = _pipeline(tmp_path, home / "articles")
    p.settings = Settings(index_dir=home / "index", corpus_dir=home / "articles", chunk_tokens=60,
                          chunk_overlap_tokens=10)
    p.load()
    plain = Settings(index_dir=home / "index", chunk_tokens=60, chunk_overlap_tokens=10)  # no corpus_dir given
    assert QAPipeline(plain, embedder=FakeEmbedder(), reader=NoReader()).resolve_corpus() == (home / "articles"
                                                                                            ).resolve()
    moved = tmp_path / "moved"
    home.rename(moved)
    plain = Settings(index_dir=moved / "index", chunk_tokens=60, chunk_overlap_tokens=10)
    again = QAPipeline(plain, embedder=FakeEmbedder(), reader=NoReader())
    assert again.resolve_corpus() == (moved / "articles").resolve()  # found next to the moved index
    version = (moved / "index" / "CURRENT").read_text()
    again.load()
    assert (moved / "index" / "CURRENT").read_text() == version  # not stale: nothing rebuilt

    shutil.rmtree(moved / "articles")
    with pytest.raises(CorpusError, match=r"was built from .*which no longer exists.*--corpus"):
        QAPipeline(plain, embedder=FakeEmbedder(), reader=NoReader()).resolve_corpus()
