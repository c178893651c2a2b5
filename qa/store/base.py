"""The store protocol: what the core (pipeline, retrieval, writes) needs from where articles,
chunks and vectors live. Two backends implement it: ``local`` (FAISS + BM25 + journal on disk,
:mod:`qa.store.local`) and ``milvus`` (:mod:`qa.store.milvus`)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from qa.embed import Embedder
from qa.index import Manifest
from qa.journal import Record
from qa.types import Article

if TYPE_CHECKING:
    from qa.retrieve import Retriever


class StoreView(Protocol):
    """What a question reads: the articles and chunks of one store as the question sees them.

    A local view is an immutable snapshot (a write returns a new one); a Milvus view reads the
    store as it is now, so another replica's writes show through it at once.
    """

    @property
    def articles(self) -> Mapping[str, Article]: ...

    @property
    def n_chunks(self) -> int: ...

    @property
    def base_manifest(self) -> Manifest:
        """The embedding model and chunk settings the store was built with."""
        ...

    @property
    def manifest(self) -> Manifest:
        """``base_manifest`` with every article's fingerprint and the chunk count as they are now."""
        ...


class Store(Protocol):
    """Where the index lives: build it, open it, write to it, retrieve from it.

    ``keeps_corpus_files``: the corpus folder is the source of truth and writes also go there
    (local); otherwise the store holds the articles' full text and no folder is needed (Milvus).
    ``live``: views read the store as it is now, so nothing derived from one may be cached.
    """

    kind: str
    keeps_corpus_files: bool
    live: bool

    def location(self) -> str:
        """Where it is, for messages (``index/``, ``milvus index/milvus.db collection qa``)."""
        ...

    def ping(self, timeout_s: float) -> None:
        """Check cheaply (within ``timeout_s``) that the store can be reached now, for readiness.

        Raises:
            StoreUnavailable: it cannot (a local folder always can: its errors show on use).
        """
        ...

    def open(self) -> StoreView:
        """The stored index.

        Raises:
            IndexMissing: nothing built yet.
            IndexCorrupt: what is stored cannot be read (the message names it).
            IndexStale: it is in a layout of another version of article-qa (to be rebuilt).
            StoreUnavailable: the store cannot be reached.
        """
        ...

    def manifest(self) -> Manifest:
        """What the stored index was built with (model, chunk settings, corpus folder), read
        cheaply: its fingerprints may be empty. Raises as :meth:`open`."""
        ...

    def status_manifest(self) -> Manifest:
        """The manifest with every stored article's fingerprint and the chunk count (``qa index status``)."""
        ...

    def recorded_corpus(self) -> Path | None:
        """The corpus folder the stored index was built from, where it can be reached now; None if
        none was recorded, nothing is stored, or (a store holding its own articles) it is gone."""
        ...

    def build(self, articles: list[Article], embedder: Embedder, previous: StoreView | None, show_progress: bool,
              corpus: Path | None) -> StoreView:
        """Replace the stored index with one of ``articles`` (chunked and embedded) and return it;
        ``previous`` lends the vectors of unchanged articles where the backend can reuse them."""
        ...

    def write(self, view: StoreView, record: Record) -> StoreView:
        """Apply one add/replace (``PutRecord``) or delete (``DeleteRecord``), durably before it
        returns; the view to read from afterwards."""
        ...

    def consistent(self, view: StoreView) -> bool:
        """Whether ``view`` can take a write (a failed write can leave a local index half-updated)."""
        ...

    def version(self, view: StoreView) -> Hashable | None:
        """What identifies the stored state ``view`` was read from (None: it follows the store)."""
        ...

    def latest_version(self) -> Hashable | None:
        """The stored state now, comparable with :meth:`version` (None: unknown or not tracked)."""
        ...

    def writer(self, what: str, timeout_s: float) -> AbstractContextManager[None]:
        """Be the one writer of the store across processes while the block runs.

        Raises:
            IndexBusy: another process held it for ``timeout_s``.
        """
        ...

    def retriever(self, view: StoreView, embedder: Embedder) -> Retriever:
        """Hybrid (dense + sparse, fused by reciprocal rank fusion) retrieval over ``view``."""
        ...

    def needs_compaction(self, view: StoreView) -> bool:
        """Whether the writes since the last full save should be folded into a fresh one."""
        ...

    def compact(self, view: StoreView, embedder: Embedder, corpus: Path | None) -> StoreView:
        """Fold the writes into a fresh saved index (rebuilt where the backend needs it)."""
        ...
