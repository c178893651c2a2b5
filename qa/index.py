"""Index stage: FAISS (dense) + BM25 (sparse) + chunk metadata, persisted atomically.

On disk, ``index/CURRENT`` names the version folder in use (``v-...``). A build writes a new
version folder completely (every file fsynced, checksummed in ``manifest.json``), then replaces
``CURRENT`` atomically, so a crash at any point leaves the previous index loadable and a
half-written one never referenced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qa import journal
from qa.bm25 import BM25, EMPTY_TOKEN, RowView, best_rows, bm25_tokens
from qa.chunk import chunk_article
from qa.durable import fsync_dir
from qa.embed import Embedder
from qa.errors import CorpusError, IndexCorrupt, IndexMissing
from qa.journal import JOURNAL, DeleteRecord, PutRecord, Record
from qa.types import Article, Chunk, Filters

log = logging.getLogger(__name__)

# 2: our own BM25 (bm25/), deleted rows in chunks.npz, journal.log; 3: article metadata (source, url,
# author) and the corpus folder
FORMAT_VERSION = 3
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
ARTICLES = "articles.jsonl"
CHUNKS = "chunks.npz"
VECTORS = "vectors.faiss"
BM25_DIR = "bm25"
# Files up to this size are re-hashed on every load; larger ones are checked by size only,
# so that loading a million-chunk index does not read gigabytes twice.
FULL_CHECKSUM_MAX_BYTES = 256 * 1024 * 1024
# HNSW graph: links per node, candidate-list sizes while building and while searching. `qa bench`
# (bench/results.md) measured recall@10 vs exact search on 1M clustered vectors: 0.83 at efSearch 128,
# 0.96 at 1024 (1.6 ms a question on 2 cores); at 100k, 0.996 from 128 on.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 1024
# A filtered question searches at most this many rows exactly (their vectors, one matrix
# product); more go through FAISS's ID selector.
EXACT_FILTER_MAX_ROWS = 50_000

@dataclass
class Manifest:
    """What an index was built from; loading compares it with the corpus and settings."""

    embed_model: str
    dim: int
    chunk_tokens: int
    chunk_overlap_tokens: int
    index_type: str
    fingerprints: dict[str, str]
    n_chunks: int
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    created: float = 0.0
    # The folder the index was built from: absolute, and relative to the index folder (so that a
    # checkout moved with its index still finds it). Empty for an index built from a list.
    corpus_dir: str = ""
    corpus_dir_from_index: str = ""

    def to_json(self) -> str:
        """The manifest as JSON, with a SHA-256 of its own content (so that no flipped byte in it,
        a fingerprint included, goes unnoticed)."""
        return json.dumps({**self.__dict__, "sha256": _manifest_sha256(self.__dict__)}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse a manifest; ValueError if it is not one (a field missing or of the wrong type, or
        content that does not match its checksum)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("manifest is not a JSON object")
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"index format {data.get('format_version')!r} is from another version of article-qa "
                             f"(this one reads and writes {FORMAT_VERSION})")
        if data.pop("sha256", None) != _manifest_sha256(data):
            raise ValueError("manifest does not match its checksum")
        for name, kind in _MANIFEST_FIELDS.items():
            value = data.get(name)
            if name in data and (not isinstance(value, kind) or isinstance(value, bool)):
                raise ValueError(f"manifest field {name} is not a {kind}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in data.get("fingerprints", {}).items()):
            raise ValueError("manifest fingerprints are not doc_id -> sha256")
        for meta in data.get("files", {}).values():
            if not (isinstance(meta, dict) and type(meta.get("bytes")) is int and isinstance(meta.get("sha256"), str)):
                raise ValueError("manifest files are not name -> {bytes, sha256}")
        return cls(**data)


def _manifest_sha256(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()


# What each manifest field must hold (a garbled manifest can still be valid JSON).
_MANIFEST_FIELDS: dict[str, type | tuple[type, ...]] = {
    "embed_model": str, "dim": int, "chunk_tokens": int, "chunk_overlap_tokens": int, "index_type": str,
    "fingerprints": dict, "n_chunks": int, "files": dict, "format_version": int, "created": (int, float),
    "corpus_dir": str, "corpus_dir_from_index": str,
}


class _RWLock:
    """Many readers or one writer (writers first once waiting)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class IndexStore:
    """What every snapshot of one loaded index shares and writes append to: the FAISS index,
    BM25 postings, chunk rows, and for each row the generation that deleted it.

    FAISS is not safe to search while vectors are added, so searches hold ``lock`` for reading
    and appends hold it for writing (a few milliseconds: the article's vectors only).
    """

    def __init__(self, faiss_index: Any, bm25: BM25, chunks: list[Chunk], deleted_at: np.ndarray) -> None:
        self.faiss_index = faiss_index
        self.bm25 = bm25
        self.chunks = chunks
        self.deleted_at = deleted_at
        self.lock = _RWLock()
        self.generation = 0
        self.base_rows = len(chunks)  # rows in the saved version; the journal holds the rest
        self.journal_rows = 0  # rows added or deleted by journal records since then

    def consistent(self, n_rows: int) -> bool:
        """Whether the shared parts all hold exactly ``n_rows`` rows (an interrupted append does not)."""
        return self.faiss_index.ntotal == len(self.chunks) == self.bm25.n_rows == n_rows


class ArticleMap(Mapping[str, Article]):
    """``doc_id -> Article`` of one snapshot, with each article's chunk rows ``[lo, hi)``.

    A base dict shared by all snapshots, plus a small overlay (the journal's articles) copied
    on each write, so a write does not copy the corpus's articles.
    """

    def __init__(self, base: dict[str, tuple[Article, int, int]],
                 overlay: dict[str, tuple[Article, int, int] | None] | None = None, size: int | None = None) -> None:
        self._base = base
        self._overlay = overlay if overlay is not None else {}
        self._size = size if size is not None else len(base)

    def _entry(self, doc_id: str) -> tuple[Article, int, int] | None:
        if doc_id in self._overlay:
            return self._overlay[doc_id]
        return self._base.get(doc_id)

    def __getitem__(self, doc_id: str) -> Article:
        entry = self._entry(doc_id)
        if entry is None:
            raise KeyError(doc_id)
        return entry[0]

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and self._entry(doc_id) is not None

    def __iter__(self) -> Iterator[str]:
        yield from (d for d in self._base if d not in self._overlay)
        yield from (d for d, e in self._overlay.items() if e is not None)

    def __len__(self) -> int:
        return self._size

    def rows(self, doc_id: str) -> tuple[int, int] | None:
        entry = self._entry(doc_id)
        return None if entry is None else (entry[1], entry[2])

    def with_entry(self, doc_id: str, entry: tuple[Article, int, int] | None) -> ArticleMap:
        """A new map with ``doc_id`` set to ``entry`` (None: removed)."""
        size = self._size + (entry is not None) - (doc_id in self)
        return ArticleMap(self._base, {**self._overlay, doc_id: entry}, size)


_DELETED_CHUNK = Chunk("", 0, 0, "")
ALIVE = np.iinfo(np.int64).max  # deleted_at of a row no write has deleted


class SearchIndex:
    """One immutable snapshot of an index: the chunk rows below ``n_rows`` that no write up to
    ``generation`` has deleted, and the articles they belong to.

    Writes (:func:`apply_record`) append to the shared :class:`IndexStore` and return a new
    snapshot; a question that took this one keeps seeing exactly it, never a half-applied write.
    """

    def __init__(self, manifest: Manifest, articles: ArticleMap, store: IndexStore, n_rows: int, generation: int,
                 n_deleted: int, live_tokens: int, path: Path | None = None) -> None:
        self.base_manifest = manifest
        self.articles = articles
        self.store = store
        self.n_rows = n_rows
        self.generation = generation
        self.n_deleted = n_deleted
        self.live_tokens = live_tokens
        self.path = path
        self._deleted_at = store.deleted_at  # the array holding every deletion up to `generation`
        self._alive: np.ndarray | None = None
        self._bitmap: np.ndarray | None = None
        self._manifest: Manifest | None = None

    @classmethod
    def create(cls, manifest: Manifest, articles: dict[str, Article], chunks: list[Chunk], faiss_index: Any,
               bm25: BM25, path: Path | None = None, deleted: np.ndarray | None = None) -> SearchIndex:
        """A first snapshot over rows ``chunks`` (each article's chunks consecutive); rows where
        ``deleted`` is true were deleted before it (their chunks are placeholders).

        Raises:
            ValueError: an article's chunks are not consecutive rows.
        """
        spans: dict[str, list[int]] = {}
        for i, c in enumerate(chunks):
            if deleted is not None and deleted[i]:
                continue
            span = spans.setdefault(c.doc_id, [i, i])
            if span[1] != i:
                raise ValueError(f"the chunks of {c.doc_id!r} are not consecutive rows")
            span[1] = i + 1
        base = {d: (a, spans.get(d, [0, 0])[0], spans.get(d, [0, 0])[1]) for d, a in articles.items()}
        lengths = bm25.doc_lengths(len(chunks))
        if deleted is None:
            deleted_at = np.full(len(chunks), ALIVE, dtype=np.int64)
            n_deleted, tokens = 0, int(lengths.sum())
        else:
            deleted_at = np.where(deleted, -1, ALIVE).astype(np.int64)
            n_deleted, tokens = int(deleted.sum()), int(lengths[~deleted].sum())
        store = IndexStore(faiss_index, bm25, list(chunks), deleted_at)
        return cls(manifest, ArticleMap(base), store, len(chunks), 0, n_deleted, tokens, path)

    @property
    def n_chunks(self) -> int:
        """Chunks this snapshot can retrieve."""
        return self.n_rows - self.n_deleted

    @property
    def manifest(self) -> Manifest:
        """The manifest as it would be saved now: fingerprints and chunk count include the journal
        (built once per snapshot, O(articles); ``base_manifest`` has the model and chunk settings)."""
        if self._manifest is None:
            self._manifest = dataclasses.replace(
                self.base_manifest, fingerprints={d: a.sha256 for d, a in self.articles.items()},
                n_chunks=self.n_chunks)
        return self._manifest

    @property
    def alive(self) -> np.ndarray | None:
        """Row i < n_rows is retrievable where true; None when every row is."""
        if self.n_deleted == 0:
            return None
        if self._alive is None:
            self._alive = self._deleted_at[: self.n_rows] > self.generation
        return self._alive

    @property
    def chunks(self) -> list[Chunk]:
        """The retrievable chunks, in row order (a copy; for inspection, not for the hot path)."""
        alive = self.alive
        rows = self.store.chunks[: self.n_rows]
        return rows if alive is None else [c for c, a in zip(rows, alive.tolist(), strict=True) if a]

    def chunk(self, row: int) -> Chunk:
        return self.store.chunks[row]

    def row_view(self) -> RowView:
        return RowView(self.n_rows, self.alive, self.n_chunks, self.live_tokens)

    def rows_matching(self, filters: Filters) -> np.ndarray:
        """The live rows of the articles ``filters`` lets through, as a mask over ``n_rows``."""
        mask = np.zeros(self.n_rows, dtype=bool)
        ids = filters.doc_ids if filters.doc_ids is not None else self.articles
        for doc_id in ids:
            art = self.articles.get(doc_id)
            rows = self.articles.rows(doc_id) if art is not None and filters.matches(art) else None
            if rows is not None:
                mask[rows[0] : rows[1]] = True
        return mask

    def dense_search(self, qvecs: np.ndarray, k: int, restrict: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """FAISS inner-product search over this snapshot's rows only (-1 ids pad a short result);
        with ``restrict`` (a row mask), over those rows only: exactly, by their vectors, when they
        are few; else through FAISS's ID selector."""
        import faiss

        fs: Any = faiss
        q = np.ascontiguousarray(qvecs, dtype=np.float32)
        if restrict is not None:
            keep = restrict if self.alive is None else restrict & self.alive
            rows = np.flatnonzero(keep)
            if len(rows) <= EXACT_FILTER_MAX_ROWS:
                return self._exact_search(q, k, rows)
            bitmap = np.packbits(keep, bitorder="little")
            with self.store.lock.read():
                index = self.store.faiss_index
                sel = fs.IDSelectorBitmap(len(bitmap), fs.swig_ptr(bitmap))
                hnsw = getattr(index, "hnsw", None)
                params = (fs.SearchParametersHNSW(sel=sel, efSearch=hnsw.efSearch) if hnsw is not None
                          else fs.SearchParameters(sel=sel))
                return index.search(q, k, params=params)
        with self.store.lock.read():
            index = self.store.faiss_index
            if self.alive is None and index.ntotal == self.n_rows:
                return index.search(q, k)
            if self._bitmap is None:
                alive = self.alive if self.alive is not None else np.ones(self.n_rows, dtype=bool)
                self._bitmap = np.packbits(alive, bitorder="little")
            sel = fs.IDSelectorBitmap(len(self._bitmap), fs.swig_ptr(self._bitmap))
            hnsw = getattr(index, "hnsw", None)
            params = (fs.SearchParametersHNSW(sel=sel, efSearch=hnsw.efSearch) if hnsw is not None
                      else fs.SearchParameters(sel=sel))
            return index.search(q, k, params=params)

    def _exact_search(self, q: np.ndarray, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        ids = np.full((len(q), k), -1, dtype=np.int64)
        if len(rows) == 0:
            return scores, ids
        with self.store.lock.read():
            vecs = np.asarray(self.store.faiss_index.reconstruct_batch(rows.astype(np.int64)), dtype=np.float32)
        sims = q @ vecs.T
        n = min(k, len(rows))
        for i in range(len(q)):
            top = np.argsort(-sims[i], kind="stable")[:n]
            scores[i, :n], ids[i, :n] = sims[i, top], rows[top]
        return scores, ids

    def bm25_search(self, tokens: list[str], k: int, restrict: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """BM25 rows and scores over this snapshot's rows, best first; with ``restrict`` (a row
        mask), the best of those rows (scored with the snapshot's statistics)."""
        with self.store.lock.read():
            if restrict is None:
                return self.store.bm25.top_k(tokens, k, self.row_view())
            rows, scores = self.store.bm25.score(tokens, self.row_view())
        keep = restrict[rows]
        return best_rows(rows[keep], scores[keep], k)

    def vector(self, row: int) -> np.ndarray:
        with self.store.lock.read():
            return np.asarray(self.store.faiss_index.reconstruct(int(row)), dtype=np.float32)

    def vectors(self, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Vectors of rows ``lo..hi-1`` (default: every row of this snapshot)."""
        hi = self.n_rows if hi is None else hi
        if hi <= lo:
            return np.zeros((0, self.base_manifest.dim), dtype=np.float32)
        with self.store.lock.read():
            return np.asarray(self.store.faiss_index.reconstruct_n(lo, hi - lo), dtype=np.float32)


# ---------------------------------------------------------------- building


def faiss_index_kind(n_chunks: int, hnsw_min_chunks: int) -> str:
    """``flat`` (exact) below ``hnsw_min_chunks`` chunks, ``hnsw`` (approximate) from there on."""
    return "hnsw" if n_chunks >= hnsw_min_chunks else "flat"


def make_faiss_index(vectors: np.ndarray, hnsw_min_chunks: int) -> tuple[Any, str]:
    """Flat inner-product index (exact; inner product = cosine on normalised vectors), or HNSW
    for corpora of at least ``hnsw_min_chunks`` chunks."""
    import faiss

    dim = vectors.shape[1]
    index: Any
    kind = faiss_index_kind(len(vectors), hnsw_min_chunks)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        index = faiss.IndexFlatIP(dim)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index, kind


def chunk_tokens_for_bm25(chunks: Sequence[Chunk]) -> list[list[str]]:
    """BM25 tokens of each chunk (a chunk without any gets a placeholder, as bm25s did)."""
    return [bm25_tokens(c.text) or [EMPTY_TOKEN] for c in chunks]


def make_bm25(chunks: Sequence[Chunk]) -> BM25:
    return BM25.build(chunk_tokens_for_bm25(chunks))


def build_index(
    articles: list[Article],
    embedder: Embedder,
    chunk_tokens: int,
    chunk_overlap_tokens: int,
    hnsw_min_chunks: int,
    previous: SearchIndex | None = None,
    show_progress: bool = False,
    corpus_dir: Path | None = None,
    index_dir: Path | None = None,
) -> SearchIndex:
    """Chunk, embed and index ``articles`` (read from ``corpus_dir``, recorded in the manifest
    together with its path relative to ``index_dir``).

    Vectors of unchanged articles are reused from ``previous`` when it was built with the same
    model and chunk settings, so adding one article to a large index embeds only that article.
    """
    seen: dict[str, Article] = {}
    for a in articles:
        if a.doc_id in seen:
            raise CorpusError(f"{seen[a.doc_id].path or 'an article'} and {a.path or 'another'} are both article "
                              f"{a.doc_id!r}; doc ids must be unique")
        seen[a.doc_id] = a
    if chunk_tokens > embedder.max_tokens:
        raise ValueError(
            f"chunk_tokens must be <= {embedder.max_tokens} (the embedding model's limit), got {chunk_tokens}"
        )
    reuse: dict[str, tuple[list[Chunk], np.ndarray]] = {}
    if (
        previous is not None
        and previous.manifest.embed_model == embedder.name
        and previous.manifest.chunk_tokens == chunk_tokens
        and previous.manifest.chunk_overlap_tokens == chunk_overlap_tokens
    ):
        old_vecs = previous.vectors()
        for doc_id, art in previous.articles.items():
            rows = previous.articles.rows(doc_id)
            if rows is not None:
                lo, hi = rows
                reuse[art.sha256] = ([previous.chunk(i) for i in range(lo, hi)], old_vecs[lo:hi])

    chunks: list[Chunk] = []
    vec_parts: list[np.ndarray] = []
    todo: list[Chunk] = []
    todo_pos: list[int] = []
    for a in articles:
        if a.sha256 in reuse:
            old_chunks, vecs = reuse[a.sha256]
            chunks.extend(Chunk(a.doc_id, c.start, c.end, c.text) for c in old_chunks)
            vec_parts.append(vecs)
        else:
            new = chunk_article(a, embedder, chunk_tokens, chunk_overlap_tokens)
            todo_pos.append(len(vec_parts))
            vec_parts.append(np.zeros((len(new), embedder.dim), dtype=np.float32))
            todo.extend(new)
            chunks.extend(new)
    if todo:
        fresh = embedder.embed_batch([c.text for c in todo], show_progress=show_progress)
        k = 0
        for pos in todo_pos:
            n = len(vec_parts[pos])
            vec_parts[pos] = fresh[k : k + n]
            k += n
    vectors = np.concatenate(vec_parts) if vec_parts else np.zeros((0, embedder.dim), dtype=np.float32)
    faiss_index, kind = make_faiss_index(vectors, hnsw_min_chunks)
    manifest = Manifest(
        embed_model=embedder.name,
        dim=embedder.dim,
        chunk_tokens=chunk_tokens,
        chunk_overlap_tokens=chunk_overlap_tokens,
        index_type=kind,
        fingerprints={a.doc_id: a.sha256 for a in articles},
        n_chunks=len(chunks),
        created=time.time(),
    )
    manifest.corpus_dir, manifest.corpus_dir_from_index = corpus_location(corpus_dir, index_dir)
    return SearchIndex.create(manifest, {a.doc_id: a for a in articles}, chunks, faiss_index, make_bm25(chunks))


def corpus_location(corpus_dir: Path | None, index_dir: Path | None) -> tuple[str, str]:
    """The manifest's record of the corpus folder: absolute, and relative to ``index_dir``."""
    if corpus_dir is None:
        return "", ""
    absolute = Path(corpus_dir).resolve()
    relative = os.path.relpath(absolute, Path(index_dir).resolve()) if index_dir is not None else ""
    return str(absolute), relative


def recorded_corpus(manifest: Manifest, index_dir: Path) -> Path | None:
    """The folder ``manifest``'s index was built from, as it can be reached now: relative to the
    index folder if that exists, else the absolute path recorded; None if none was recorded."""
    if manifest.corpus_dir_from_index:
        moved = (Path(index_dir) / manifest.corpus_dir_from_index).resolve()
        if moved.is_dir():
            return moved
    return Path(manifest.corpus_dir) if manifest.corpus_dir else None


# ---------------------------------------------------------------- writes (the journal)


def prepare_put(article: Article, embedder: Embedder, chunk_tokens: int, chunk_overlap_tokens: int) -> PutRecord:
    """The journal record that adds or replaces ``article``: its chunks, embedded."""
    chunks = chunk_article(article, embedder, chunk_tokens, chunk_overlap_tokens)
    vectors = (embedder.embed_batch([c.text for c in chunks]) if chunks
               else np.zeros((0, embedder.dim), dtype=np.float32))
    return PutRecord(article.doc_id, article.text, article.title, article.date, article.sha256, article.path,
                     [(c.start, c.end) for c in chunks], np.asarray(vectors, dtype=np.float32), article.meta())


def _meta_fields(meta: Mapping[str, object]) -> dict[str, str | None]:
    """``source``/``url``/``author`` of a stored record (absent or not a string: None)."""
    return {k: v if isinstance(v, str) else None for k in ("source", "url", "author") for v in [meta.get(k)]}


def apply_record(index: SearchIndex, record: Record) -> SearchIndex:
    """The snapshot after ``record``, applied in memory to ``index`` (the latest snapshot).

    The article's old rows get a deletion generation, the new rows are appended; snapshots
    taken before see neither change.
    """
    store = index.store
    if index.generation != store.generation or not store.consistent(index.n_rows):
        raise RuntimeError("the in-memory index is not the latest or was left half-updated; reload it")
    old = index.articles.rows(record.doc_id)
    if isinstance(record, DeleteRecord) and old is None:
        raise ValueError(f"the journal deletes {record.doc_id!r}, which the index does not hold")
    if isinstance(record, PutRecord) and record.vectors.shape[1] != index.base_manifest.dim:
        raise ValueError(f"{record.doc_id!r} has vectors of dimension {record.vectors.shape[1]}, the index "
                         f"{index.base_manifest.dim}")
    gen = index.generation + 1
    n_rows, n_deleted, tokens = index.n_rows, index.n_deleted, index.live_tokens
    entry: tuple[Article, int, int] | None = None
    with store.lock.write():
        # What can fail (memory) first, so that a failure leaves no row deleted by a write that never was.
        if isinstance(record, PutRecord):
            article = Article(record.doc_id, record.text, record.title, record.date, record.sha256, record.path,
                              **_meta_fields(record.meta))
            new = [Chunk(article.doc_id, s, e, article.text[s:e]) for s, e in record.spans]
            if n_rows + len(new) > len(store.deleted_at):
                grown = np.full(max(n_rows + len(new), 2 * len(store.deleted_at)), ALIVE, dtype=np.int64)
                grown[:n_rows] = store.deleted_at[:n_rows]
                store.deleted_at = grown
            if new:
                store.faiss_index.add(np.ascontiguousarray(record.vectors, dtype=np.float32))
            store.chunks.extend(new)
            token_lists = chunk_tokens_for_bm25(new)
            store.bm25.add(token_lists)
            entry = (article, n_rows, n_rows + len(new))
            n_rows += len(new)
            tokens += sum(len(t) for t in token_lists)
            store.journal_rows += len(new)
        if old is not None:
            lo, hi = old
            store.deleted_at[lo:hi] = gen
            n_deleted += hi - lo
            tokens -= int(store.bm25.doc_lengths(hi)[lo:].sum())
            store.journal_rows += hi - lo
        store.generation = gen
    return SearchIndex(index.base_manifest, index.articles.with_entry(record.doc_id, entry), store, n_rows, gen,
                       n_deleted, tokens, index.path)


def write_record(index: SearchIndex, record: Record) -> SearchIndex:
    """Append ``record`` to the journal of ``index``'s version (fsynced), then apply it in memory."""
    if index.path is None:
        raise RuntimeError("the index was never saved; save_index() it before writing to it")
    path = index.path / JOURNAL
    start = journal.append(path, record)
    try:
        return apply_record(index, record)
    except BaseException:
        journal.truncate(path, start)  # a refused write leaves no record
        raise


def needs_compaction(index: SearchIndex, fraction: float, min_rows: int) -> bool:
    """Whether the journal holds more than ``fraction`` of the base's rows (and over ``min_rows``)."""
    return index.store.journal_rows > max(min_rows, fraction * index.store.base_rows)


def needs_rebuild(index: SearchIndex, fraction: float, hnsw_min_chunks: int) -> bool:
    """Whether saving ``index`` as it is would keep too many deleted rows, or the wrong FAISS kind."""
    kind = faiss_index_kind(index.n_chunks, hnsw_min_chunks)
    return index.n_deleted > fraction * index.n_rows or kind != index.base_manifest.index_type


# ---------------------------------------------------------------- saving


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)




def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def save_index(index: SearchIndex, index_dir: Path | str) -> Path:
    """Persist ``index`` (journal included) as a new version under ``index_dir`` and make it
    current, atomically. Deleted rows stay in FAISS and are marked in ``chunks.npz``."""
    import faiss

    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    name = f"v-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    tmp = index_dir / f".tmp-{name}"
    tmp.mkdir()
    store = index.store
    try:
        with (tmp / ARTICLES).open("w", encoding="utf-8") as f:
            for d in sorted(index.articles):
                a = index.articles[d]
                f.write(json.dumps({"doc_id": a.doc_id, "title": a.title, "date": a.date, "sha256": a.sha256,
                                    "path": a.path, **a.meta(), "text": a.text}, ensure_ascii=False) + "\n")
        doc_ids = sorted(index.articles)
        doc = np.full(index.n_rows, -1, dtype=np.int32)  # -1: a deleted row
        start = np.zeros(index.n_rows, dtype=np.int64)
        end = np.zeros(index.n_rows, dtype=np.int64)
        for pos, d in enumerate(doc_ids):
            rows = index.articles.rows(d)
            if rows is None:
                continue
            lo, hi = rows
            doc[lo:hi] = pos
            start[lo:hi] = [store.chunks[i].start for i in range(lo, hi)]
            end[lo:hi] = [store.chunks[i].end for i in range(lo, hi)]
        with (tmp / CHUNKS).open("wb") as f:
            np.savez(f, doc_ids=np.array(doc_ids, dtype=object).astype(str), doc=doc, start=start, end=end)
        with store.lock.read():
            if store.faiss_index.ntotal != index.n_rows:
                raise RuntimeError("only the latest snapshot of an index can be saved")
            faiss.write_index(store.faiss_index, str(tmp / VECTORS))
            store.bm25.save(tmp / BM25_DIR, index.alive)
        files: dict[str, dict[str, Any]] = {}
        for p in sorted(tmp.rglob("*")):
            if p.is_file():
                _fsync_file(p)
                files[p.relative_to(tmp).as_posix()] = {"bytes": p.stat().st_size, "sha256": _sha256_file(p)}
        manifest = dataclasses.replace(index.manifest, files=files)
        (tmp / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        _fsync_file(tmp / MANIFEST)
        fsync_dir(tmp / BM25_DIR)
        fsync_dir(tmp)
        final = index_dir / name
        os.replace(tmp, final)
        fsync_dir(index_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_atomic(index_dir / CURRENT, (name + "\n").encode())
    # The new version holds everything up to here; later writes journal into it.
    index.base_manifest = manifest
    index.path = final
    if store.generation == index.generation:
        store.base_rows, store.journal_rows = index.n_rows, 0
    _remove_old_versions(index_dir, keep=name)
    return final


def _remove_old_versions(index_dir: Path, keep: str) -> None:
    for p in index_dir.iterdir():
        if p.is_dir() and p.name != keep and (p.name.startswith("v-") or p.name.startswith(".tmp-v-")):
            shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------- loading


def current_version(index_dir: Path | str) -> Path:
    """The version folder ``index_dir/CURRENT`` points to."""
    index_dir = Path(index_dir)
    pointer = index_dir / CURRENT
    if not pointer.exists():
        raise IndexMissing(f"no index in {index_dir}/; run `qa index build <corpus folder>`")
    name = pointer.read_text(encoding="utf-8", errors="replace").strip()
    if not re.fullmatch(r"v-[\w-]+", name) or not (index_dir / name).is_dir():
        raise IndexCorrupt(f"{pointer} does not name an index version; run `qa index build <corpus folder>`")
    return index_dir / name


def read_manifest(index_dir: Path | str) -> Manifest:
    """The manifest of the current index version."""
    path = current_version(index_dir) / MANIFEST
    try:
        manifest = Manifest.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, UnicodeDecodeError) as e:
        raise IndexCorrupt(f"{path} is unreadable ({type(e).__name__}: {e}); run `qa index build <corpus folder>`"
                           ) from e
    return manifest


def manifest_with_journal(index_dir: Path | str) -> Manifest:
    """The current version's manifest with its journal applied to the fingerprints and chunk
    count, read without loading vectors (what ``qa index status`` shows)."""
    version = current_version(index_dir)
    manifest = read_manifest(index_dir)
    try:
        with np.load(version / CHUNKS, allow_pickle=False) as z:
            doc_ids = [str(x) for x in z["doc_ids"]]
            counts = np.bincount(z["doc"][z["doc"] >= 0], minlength=len(doc_ids))
    except (OSError, ValueError, KeyError) as e:
        raise IndexCorrupt(f"{version / CHUNKS} is unreadable ({type(e).__name__}); rebuild the index") from e
    n_chunks = dict(zip(doc_ids, counts.tolist(), strict=True))
    fingerprints = dict(manifest.fingerprints)
    for record in journal.read_journal(version / JOURNAL):
        n_chunks.pop(record.doc_id, None)
        fingerprints.pop(record.doc_id, None)
        if isinstance(record, PutRecord):
            n_chunks[record.doc_id] = len(record.spans)
            fingerprints[record.doc_id] = record.sha256
    return dataclasses.replace(manifest, fingerprints=fingerprints, n_chunks=sum(n_chunks.values()))


def _verify_files(version: Path, manifest: Manifest) -> None:
    listed = set(manifest.files)
    unlisted = sorted({ARTICLES, CHUNKS, VECTORS} - listed) + ([] if any(r.startswith(f"{BM25_DIR}/") for r in listed)
                                                             else [BM25_DIR])
    if unlisted:
        raise IndexCorrupt(f"{version / MANIFEST} has no checksum for {', '.join(unlisted)}; rebuild the index")
    for rel, meta in manifest.files.items():
        p = version / rel
        if not p.is_file():
            raise IndexCorrupt(f"{p} is missing; run `qa index build <corpus folder>`")
        size = p.stat().st_size
        if size != meta.get("bytes"):
            raise IndexCorrupt(f"{p} has {size} bytes, expected {meta.get('bytes')} (truncated?); rebuild the index")
        if size <= FULL_CHECKSUM_MAX_BYTES and _sha256_file(p) != meta.get("sha256"):
            raise IndexCorrupt(f"{p} does not match its checksum (garbled?); rebuild the index")


def load_index(index_dir: Path | str) -> SearchIndex:
    """Load and verify the current index version, then replay its journal.

    Raises:
        IndexMissing: nothing built yet.
        IndexCorrupt: a file is missing, truncated or garbled (the message names it).
    """
    import faiss

    version = current_version(index_dir)
    manifest = read_manifest(index_dir)
    _verify_files(version, manifest)
    try:
        articles: dict[str, Article] = {}
        with (version / ARTICLES).open(encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                articles[d["doc_id"]] = Article(
                    d["doc_id"], d["text"], d["title"], d["date"], d["sha256"], d.get("path", ""), **_meta_fields(d)
                )
        with np.load(version / CHUNKS, allow_pickle=False) as z:
            doc_ids = [str(x) for x in z["doc_ids"]]
            doc, start, end = z["doc"], z["start"], z["end"]
        chunks = []
        for di, s, e in zip(doc.tolist(), start.tolist(), end.tolist(), strict=True):
            if di < 0:
                chunks.append(_DELETED_CHUNK)
                continue
            a = articles[doc_ids[di]]
            chunks.append(Chunk(a.doc_id, s, e, a.text[s:e]))
        faiss_index = faiss.read_index(str(version / VECTORS))
        bm25 = BM25.load(version / BM25_DIR)
    except (OSError, ValueError, KeyError, IndexError, RuntimeError, TypeError) as e:
        raise IndexCorrupt(f"index at {version} is unreadable ({type(e).__name__}: {e}); rebuild it") from e
    n_live = int((doc >= 0).sum())
    if faiss_index.ntotal != len(chunks) or bm25.n_rows != len(chunks) or n_live != manifest.n_chunks:
        raise IndexCorrupt(f"index at {version} has {faiss_index.ntotal} vectors, {bm25.n_rows} BM25 rows and "
                           f"{n_live} chunks, its manifest says {manifest.n_chunks}; rebuild it")
    try:
        index = SearchIndex.create(manifest, articles, chunks, faiss_index, bm25, version, deleted=doc < 0)
    except ValueError as e:
        raise IndexCorrupt(f"{version / CHUNKS}: {e}; rebuild the index") from e
    for i, record in enumerate(journal.read_journal(version / JOURNAL)):
        try:
            index = apply_record(index, record)
        except ValueError as e:
            raise IndexCorrupt(f"{version / JOURNAL}: record {i + 1} does not fit the index ({e}); "
                               "rebuild the index") from e
    return index


def staleness(
    manifest: Manifest, fingerprints: dict[str, str], embed_model: str, chunk_tokens: int, chunk_overlap_tokens: int
) -> str | None:
    """Why the index no longer matches the corpus or settings, or None if it does."""
    if manifest.embed_model != embed_model:
        return f"it was built with embedding model {manifest.embed_model!r}, not {embed_model!r}"
    if (manifest.chunk_tokens, manifest.chunk_overlap_tokens) != (chunk_tokens, chunk_overlap_tokens):
        return "the chunk settings changed"
    old, new = manifest.fingerprints, fingerprints
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(d for d in set(old) & set(new) if old[d] != new[d])
    parts = []
    for label, ids in (("added", added), ("removed", removed), ("changed", changed)):
        if ids:
            shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
            parts.append(f"{label}: {shown}")
    return "articles " + "; ".join(parts) if parts else None
