"""The local store: today's FAISS + BM25 + chunk offsets in versioned folders, with writes in a
journal (:mod:`qa.index`, :mod:`qa.journal`), behind the :class:`~qa.store.base.Store` protocol.

It adapts those modules without changing them: the same files, the same snapshots, the same
speed. The corpus folder stays the source of truth (``keeps_corpus_files``).
"""

from __future__ import annotations

from collections.abc import Hashable
from contextlib import AbstractContextManager
from pathlib import Path

from qa import writer_lock
from qa.embed import Embedder
from qa.errors import IndexCorrupt, IndexMissing
from qa.index import (
    Manifest,
    SearchIndex,
    build_index,
    current_version,
    load_index,
    manifest_with_journal,
    needs_compaction,
    needs_rebuild,
    read_manifest,
    recorded_corpus,
    save_index,
    write_record,
)
from qa.journal import JOURNAL, Record
from qa.retrieve import HybridRetriever
from qa.settings import Settings
from qa.store.base import StoreView
from qa.types import Article


class LocalStore:
    """FAISS + BM25 + journal in ``settings.index_dir``; one writer per folder across processes."""

    kind = "local"
    keeps_corpus_files = True
    live = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.index_dir = Path(settings.index_dir)

    def location(self) -> str:
        return f"{self.index_dir}/"

    def ping(self, timeout_s: float) -> None:
        """Nothing to reach: a folder's problems show when it is read or written."""

    def open(self) -> SearchIndex:
        return load_index(self.index_dir)

    def manifest(self) -> Manifest:
        return read_manifest(self.index_dir)

    def status_manifest(self) -> Manifest:
        return manifest_with_journal(self.index_dir)

    def recorded_corpus(self) -> Path | None:
        try:
            return recorded_corpus(read_manifest(self.index_dir), self.index_dir)
        except (IndexMissing, IndexCorrupt):
            return None

    def build(self, articles: list[Article], embedder: Embedder, previous: StoreView | None, show_progress: bool,
              corpus: Path | None) -> SearchIndex:
        s = self.settings
        index = build_index(articles, embedder, s.chunk_tokens, s.chunk_overlap_tokens, s.hnsw_min_chunks,
                            previous=_own(previous) if previous is not None else None, show_progress=show_progress,
                            corpus_dir=corpus, index_dir=self.index_dir)
        save_index(index, self.index_dir)
        return index

    def write(self, view: StoreView, record: Record) -> SearchIndex:
        return write_record(_own(view), record)

    def consistent(self, view: StoreView) -> bool:
        index = _own(view)
        return index.store.consistent(index.n_rows)

    def version(self, view: StoreView) -> Hashable | None:
        return _disk_state_of(_own(view).path)

    def latest_version(self) -> Hashable | None:
        try:
            return _disk_state_of(current_version(self.index_dir))
        except (IndexMissing, IndexCorrupt):
            return None

    def writer(self, what: str, timeout_s: float) -> AbstractContextManager[None]:
        return writer_lock.hold(self.index_dir, timeout_s, what)

    def retriever(self, view: StoreView, embedder: Embedder) -> HybridRetriever:
        return HybridRetriever(_own(view), embedder, self.settings.candidates_k, self.settings.rrf_k)

    def needs_compaction(self, view: StoreView) -> bool:
        s = self.settings
        return needs_compaction(_own(view), s.journal_compact_fraction, s.journal_compact_min_chunks)

    def compact(self, view: StoreView, embedder: Embedder, corpus: Path | None) -> SearchIndex:
        """A fresh version with an empty journal: saved as it is, or rebuilt (vectors reused) when
        too many rows are deleted or the corpus has outgrown flat search."""
        index = _own(view)
        s = self.settings
        if needs_rebuild(index, s.journal_compact_fraction, s.hnsw_min_chunks):
            return self.build([index.articles[d] for d in sorted(index.articles)], embedder, index, False, corpus)
        save_index(index, self.index_dir)
        return index


def _own(view: StoreView) -> SearchIndex:
    if not isinstance(view, SearchIndex):
        raise TypeError(f"the local store reads its own indexes, not a {type(view).__name__}")
    return view


def _disk_state_of(version: Path | None) -> tuple[str, int] | None:
    """(version name, journal bytes) of an index version folder, what another process's
    rebuild or write changes."""
    if version is None:
        return None
    try:
        size = (version / JOURNAL).stat().st_size
    except FileNotFoundError:
        size = 0
    except OSError:
        size = -1
    return version.name, size
