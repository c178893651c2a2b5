"""Sealing a Milvus store: a build seals what it inserted, and a replica seals after
``SEAL_EVERY_WRITES`` of its writes (Milvus Lite would otherwise rebuild its BM25 index over every
unsealed row on each search)."""

from __future__ import annotations

from pathlib import Path

import pytest

import qa.store.milvus as milvus
from qa.pipeline import QAPipeline
from tests.conftest import FakeEmbedder
from tests.store.conftest import store_settings
from tests.test_index import NoReader


def test_a_build_seals_and_a_replica_seals_after_its_writes(tmp_path: Path, seeds_copy: Path,
                                                           request: pytest.FixtureRequest,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(milvus, "SEAL_EVERY_WRITES", 3)
    seals: list[str] = []
    real_seal = milvus.MilvusStore.seal

    def counting_seal(self: milvus.MilvusStore) -> None:
        seals.append(self.chunks_name)
        real_seal(self)

    monkeypatch.setattr(milvus.MilvusStore, "seal", counting_seal)
    settings = store_settings("milvus-lite", tmp_path, seeds_copy, request, compact_in_background=False)
    p = QAPipeline(settings, embedder=FakeEmbedder(), reader=NoReader())
    p.load(seeds_copy)
    assert len(seals) == 1  # the build's last step before its manifest
    for i in range(2):
        p.add_document(f"extra-{i}", f"Extra article number {i} about sealing segments in a vector store.")
    assert len(seals) == 1
    p.delete_document("extra-0")  # the third write: due
    assert len(seals) == 2
    assert not p.store.needs_compaction(p.index)  # type: ignore[arg-type]
    assert "extra-1" in p.index.articles and "extra-0" not in p.index.articles  # type: ignore[union-attr]


def test_a_build_seals_every_so_many_chunks(tmp_path: Path, seeds_copy: Path, request: pytest.FixtureRequest,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(milvus, "SEAL_EVERY_CHUNKS", 5)
    monkeypatch.setattr(milvus, "EMBED_BATCH_CHUNKS", 5)
    seals: list[int] = []
    real_seal = milvus.MilvusStore.seal

    def counting_seal(self: milvus.MilvusStore) -> None:
        seals.append(1)
        real_seal(self)

    monkeypatch.setattr(milvus.MilvusStore, "seal", counting_seal)
    settings = store_settings("milvus-lite", tmp_path, seeds_copy, request)
    p = QAPipeline(settings, embedder=FakeEmbedder(), reader=NoReader())
    p.load(seeds_copy)
    assert p.index.n_chunks > 10  # type: ignore[union-attr]
    # one insert per article here (each has >= 5 chunks), each due a seal, then the last one
    assert len(seals) == len(p.index.articles) + 1  # type: ignore[union-attr]
