"""The Milvus store: chunks, vectors and the articles' full text in Milvus, through pymilvus's
``MilvusClient``, so that any number of ``qa serve`` replicas share one store.

Two collections (``QA_MILVUS_COLLECTION``, default ``qa``):

- ``qa``: one row per chunk: doc id, the write's version and time, start/end (character offsets
  into the article text), the chunk text, the article's day and outlet (for filters: Milvus has no
  joins), the dense vector, the chunk's BM25 terms as the local store sees them (``terms``), and a
  sparse vector that Milvus's BM25 function computes from those terms. Hybrid search runs one dense
  and one BM25 request (the question's terms, made the same way) and fuses them with Milvus's RRF
  ranker.
- ``qa_articles``: the articles' full text (split into parts: a VARCHAR holds at most 65,535
  bytes) and metadata. Milvus needs a vector field in every collection, so each row carries a
  constant two-dimensional ``pad``.

Milvus has no transactions, so a write commits by its article rows: a put inserts the new chunks,
then the article rows (from then on the new version is the article), then deletes the older
versions; a delete removes the article rows first. Retrieval keeps only chunks of an article's
current version, so a question sees an article before or after a write, never a mix, and chunks
orphaned by a crash between the steps are never retrieved (the next write of that id removes them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
import uuid
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from qa import bm25
from qa.chunk import chunk_article
from qa.embed import Embedder
from qa.errors import CorpusError, IndexCorrupt, IndexMissing, IndexStale, StoreUnavailable
from qa.index import Manifest, bm25_tokens, corpus_location
from qa.journal import DeleteRecord, PutRecord, Record
from qa.retrieve import FusedRetrieval
from qa.settings import Settings
from qa.store.base import StoreView
from qa.types import Article, Chunk, Filters, Hit

log = logging.getLogger(__name__)
T = TypeVar("T")

# The layout of the two collections; a store of another layout must be rebuilt. 2: the BM25
# function reads the ``terms`` field (was: the chunk text through Milvus's own analyzer).
FORMAT_VERSION = 2
MANIFEST_PROPERTY = "qa.manifest"  # the chunk collection's property holding the build's manifest (JSON)
ARTICLE_PART_BYTES = 60_000  # UTF-8 bytes of article text per row, under Milvus's VARCHAR limit of 65,535
MAX_CHUNK_BYTES = 65_535
MAX_ID_BYTES = 2_048
INSERT_BATCH_ROWS = 512  # rows per insert request (well under gRPC's message limit at dim 1,024)
EMBED_BATCH_CHUNKS = 1_024  # chunks embedded at a time while building
QUERY_BATCH_ROWS = 1_000  # rows per page when listing every article
# Sealing (flush) turns the rows inserted since into indexed segments. Milvus Lite seals by itself
# only at 128 MiB of unsealed rows (about 45k chunks at dim 384), inside whichever insert crosses it,
# or when its process closes the store; until then every BM25 search rebuilds an index over the
# unsealed rows (at 2,000 chunks: 376 ms of CPU per search unsealed, 31-49 ms sealed). So a build
# seals every SEAL_EVERY_CHUNKS and at its end, and a replica seals after SEAL_EVERY_WRITES writes.
SEAL_EVERY_CHUNKS = 20_000
SEAL_EVERY_WRITES = 200
BULK_TIMEOUT_S = 600.0  # one insert or seal of a build may take minutes on a busy Milvus Lite
PAD = [1.0, 0.0]
CONNECT_FAILED = 2  # pymilvus's code for "Fail connecting to server" (the server cannot be reached)
COLLECTION_NOT_LOADED = 101  # Milvus's error code for a collection that is not loaded (merr.ErrCollectionNotLoaded)
# The sparse side reads the chunk's terms as the local BM25 makes them (qa.index.bm25_tokens:
# lower-cased words without stopwords, a plural "s" stripped), joined by spaces; Milvus's standard
# tokenizer splits them back into exactly those terms (Milvus Lite's is the same \w+ split; a
# Milvus server's splits on Unicode word boundaries, which should agree on Latin-script words but
# cuts CJK runs into single characters: not checked against a server here). No filters: the terms
# are lower-cased already, and a stop filter would drop terms the local BM25 keeps ("hers" -> "her").
ANALYZER: dict[str, Any] = {"tokenizer": "standard"}
# The term of a chunk or question without any other (the local EMPTY_TOKEN, which Milvus's tokenizer
# would cut to "empty"): a question of stopwords only then matches no chunk with words, as locally.
EMPTY_TERM = "qa_no_terms"


def literal(value: str) -> str:
    """``value`` as a Milvus expression string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def filter_expression(filters: Filters | None) -> str:
    """The Milvus boolean expression of ``filters`` over the chunk collection ("" lets all through).

    Same rules as :meth:`Filters.matches`: dates compare the article's day (an undated article is
    outside any date range), the outlet compares case-insensitively (stored case-folded).
    """
    if filters is None or filters.empty:
        return ""
    parts = []
    if filters.doc_ids is not None:
        parts.append(f"doc_id in [{', '.join(literal(d) for d in sorted(filters.doc_ids))}]")
    if filters.source is not None:
        parts.append(f"source_key == {literal(filters.source.casefold())}")
    if filters.since is not None or filters.until is not None:
        parts.append('day != ""')
        if filters.since is not None:
            parts.append(f"day >= {literal(filters.since)}")
        if filters.until is not None:
            parts.append(f"day <= {literal(filters.until)}")
    return " and ".join(parts)


def split_text(text: str, max_bytes: int = ARTICLE_PART_BYTES) -> list[str]:
    """``text`` cut into parts of at most ``max_bytes`` UTF-8 bytes, on character boundaries
    (``"".join`` gives it back exactly); at least one part."""
    parts, start, size = [], 0, 0
    for i, ch in enumerate(text):
        n = len(ch.encode("utf-8", "surrogatepass"))
        if size + n > max_bytes:
            parts.append(text[start:i])
            start, size = i, 0
        size += n
    parts.append(text[start:])
    return parts


class MilvusStore:
    """The index in Milvus (Milvus Lite in a ``.db`` file, or a server at ``http://host:19530``)."""

    kind = "milvus"
    keeps_corpus_files = False
    live = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.uri = settings.milvus_uri
        self.chunks_name = settings.milvus_collection
        self.articles_name = f"{settings.milvus_collection}_articles"
        self._client: Any = None
        self._connect_lock = threading.Lock()
        self._writes_since_seal = 0  # this replica's writes since it last sealed

    def location(self) -> str:
        return f"milvus {self.uri} collection {self.chunks_name}"

    # ------------------------------------------------------------ connection
    def client(self) -> Any:
        """The ``MilvusClient``, connected on first use.

        Raises:
            StoreUnavailable: pymilvus is not installed, or the store cannot be reached or opened.
        """
        with self._connect_lock:
            if self._client is None:
                try:
                    from pymilvus import MilvusClient
                except ImportError as e:
                    raise StoreUnavailable("QA_STORE=milvus needs pymilvus; install it with pip install -e '.[milvus]'"
                                           ) from e
                # pymilvus logs each failed call on its own stderr handler; the store raises every
                # failure as StoreUnavailable instead, which the edges report in one line.
                for name in ("pymilvus", "pymilvus.milvus_client"):
                    logging.getLogger(name).setLevel(logging.CRITICAL)
                embedded = self.uri.endswith(".db")
                if embedded:
                    Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
                # A server gets a connection of its own (dedicated), so that dropping it after a
                # failure (_forget) really closes the channel instead of keeping pymilvus's shared one,
                # which after a long outage waits out gRPC's reconnect backoff (up to minutes).
                extra = {} if embedded else {"dedicated": True}
                _settle_pymilvus_scipy_check()
                try:
                    self._client = MilvusClient(uri=self.uri, token=self.settings.milvus_token or "",
                                                timeout=self.settings.milvus_timeout_s, **extra)
                except Exception as e:
                    hint = ("; Milvus Lite opens a .db in one process at a time: run `milvus-lite server --data-dir "
                            "DIR` and point every process at http://127.0.0.1:PORT" if embedded else
                            "; is the server running and QA_MILVUS_URI right?")
                    raise StoreUnavailable(f"cannot open the Milvus store {self.uri} ({_reason(e)}){hint}") from e
            return self._client

    def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """``client().<method>(*args, **kwargs)`` within ``QA_MILVUS_TIMEOUT_S``, with Milvus's
        errors as :class:`StoreUnavailable` naming ``what``.

        Safe from any thread. A call that cannot reach the server drops the client, so the next
        call connects afresh: a replica recovers by itself as soon as the server is back. A server
        that forgot which collections were loaded (a restarted ``milvus-lite server``) gets them
        loaded again and the call is retried once.
        """
        kwargs.setdefault("timeout", self.settings.milvus_timeout_s)
        for attempt in range(2):
            client = self.client()
            try:
                return getattr(client, method)(*args, **kwargs)
            except StoreUnavailable:
                raise
            except Exception as e:
                if not type(e).__module__.startswith(("pymilvus", "grpc")):
                    raise
                if attempt == 0 and method != "load_collection" and getattr(e, "code", None) == COLLECTION_NOT_LOADED:
                    log.warning("the Milvus store %s had unloaded its collections (a restarted server); loading them "
                                "again", self.uri)
                    self._load_collections()
                    continue
                if _unreachable(e):
                    self._forget(client)
                raise StoreUnavailable(f"the Milvus store {self.uri} failed {what} ({_reason(e)})") from e
        raise AssertionError("unreachable")

    def _forget(self, client: Any) -> None:
        """Drop ``client`` if it is still the current one (calls in flight on it fail as unavailable)."""
        with self._connect_lock:
            if self._client is not client:
                return  # another thread dropped it already
            self._client = None
        if not self.uri.endswith(".db"):  # an embedded Milvus Lite stays open until the process exits
            with contextlib.suppress(Exception):
                client.close()

    def _load_collections(self) -> None:
        for name in (self.chunks_name, self.articles_name):
            self._call("loading a collection", "load_collection", name)

    def ping(self, timeout_s: float) -> None:
        """Raise :class:`StoreUnavailable` unless the store answers a one-row read within
        ``timeout_s`` (a cheap check for readiness probes; a missing collection passes: that is
        :class:`IndexMissing`'s business, not reachability)."""
        if self._call("answering a check", "has_collection", self.chunks_name, timeout=timeout_s):
            self._call("answering a check", "query", self.chunks_name, filter="", output_fields=["id"], limit=1,
                       timeout=timeout_s)

    def close(self) -> None:
        """Close the connection (an embedded Milvus Lite stays open until the process exits)."""
        with self._connect_lock:
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()
                self._client = None

    # ------------------------------------------------------------ opening
    def _manifest_or_missing(self) -> Manifest:
        exists = (self._call("listing collections", "has_collection", self.chunks_name)
                  and self._call("listing collections", "has_collection", self.articles_name))
        if not exists:
            raise IndexMissing(f"nothing in the store {self.location()}; run `qa index build <corpus folder>`")
        props = self._call("reading the collection", "describe_collection", self.chunks_name).get("properties") or {}
        text = props.get(MANIFEST_PROPERTY)
        if text is None:  # a build that never finished
            raise IndexMissing(f"the store {self.location()} holds no complete build; run `qa index build "
                               "<corpus folder>`")
        try:
            data = json.loads(text)
            layout = data.get("format_version")
            if isinstance(layout, int) and not isinstance(layout, bool) and layout != FORMAT_VERSION:
                raise IndexStale(f"the store {self.location()} is in layout {layout} of the Milvus store, this "
                                 f"version reads layout {FORMAT_VERSION}; run `qa index build <corpus folder>` to "
                                 "rebuild it")
            if layout != FORMAT_VERSION:
                raise ValueError(f"layout {layout!r}, this version reads {FORMAT_VERSION}")
            return Manifest(**{**data, "fingerprints": {}, "n_chunks": 0, "files": {}})
        except (ValueError, TypeError, AttributeError) as e:
            raise IndexCorrupt(f"the store {self.location()} has an unreadable manifest ({e}); run `qa index build "
                               "<corpus folder>`") from e

    def manifest(self) -> Manifest:
        return self._manifest_or_missing()

    def open(self) -> MilvusView:
        manifest = self._manifest_or_missing()
        self._load_collections()
        return MilvusView(self, manifest)

    def status_manifest(self) -> Manifest:
        manifest = self.open().base_manifest
        fingerprints = {a.doc_id: a.sha256 for a in self._current_articles(with_text=False)}
        return dataclasses.replace(manifest, fingerprints=fingerprints, n_chunks=self.count_chunks())

    def recorded_corpus(self) -> Path | None:
        """The folder the store was built from, where this machine has it (a replica needs none)."""
        try:
            m = self._manifest_or_missing()
        except (IndexMissing, IndexCorrupt, IndexStale):
            return None
        path = Path(m.corpus_dir) if m.corpus_dir else None
        return path if path is not None and path.is_dir() else None

    # ------------------------------------------------------------ building
    def create(self, dim: int) -> None:
        """Drop both collections if they exist and create them empty, for vectors of ``dim``
        (a fill then goes through :meth:`insert_embedded` and :meth:`finish_fill`)."""
        from pymilvus import DataType, Function, FunctionType

        c = self.client()
        for name in (self.chunks_name, self.articles_name):
            if self._call("listing collections", "has_collection", name):
                self._call("dropping a collection", "drop_collection", name)
        s = c.create_schema(auto_id=True, enable_dynamic_field=False)
        s.add_field("id", DataType.INT64, is_primary=True)
        s.add_field("doc_id", DataType.VARCHAR, max_length=MAX_ID_BYTES)
        s.add_field("version", DataType.VARCHAR, max_length=64)
        s.add_field("written", DataType.INT64)
        s.add_field("start", DataType.INT64)
        s.add_field("end", DataType.INT64)
        s.add_field("text", DataType.VARCHAR, max_length=MAX_CHUNK_BYTES)  # exact: citations index it
        s.add_field("terms", DataType.VARCHAR, max_length=MAX_CHUNK_BYTES, enable_analyzer=True,
                    analyzer_params=ANALYZER)
        s.add_field("day", DataType.VARCHAR, max_length=16)
        s.add_field("source_key", DataType.VARCHAR, max_length=MAX_ID_BYTES)
        s.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
        s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        s.add_function(Function(name="text_bm25", function_type=FunctionType.BM25, input_field_names=["terms"],
                                output_field_names=["sparse"]))
        ip = c.prepare_index_params()
        # inner product = cosine on the embedder's normalised vectors
        ip.add_index(field_name="dense", index_type="AUTOINDEX", metric_type="IP")
        # the local BM25's k1 and b (Milvus's defaults today, set so that they stay the same)
        ip.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                     params={"bm25_k1": bm25.K1, "bm25_b": bm25.B})
        self._call("creating the chunk collection", "create_collection", self.chunks_name, schema=s,
                   index_params=ip, consistency_level="Strong")
        a = c.create_schema(auto_id=True, enable_dynamic_field=False)
        a.add_field("id", DataType.INT64, is_primary=True)
        a.add_field("doc_id", DataType.VARCHAR, max_length=MAX_ID_BYTES)
        a.add_field("version", DataType.VARCHAR, max_length=64)
        a.add_field("written", DataType.INT64)
        a.add_field("part", DataType.INT64)
        a.add_field("parts", DataType.INT64)
        a.add_field("text", DataType.VARCHAR, max_length=MAX_CHUNK_BYTES)
        a.add_field("meta", DataType.JSON)
        a.add_field("pad", DataType.FLOAT_VECTOR, dim=len(PAD))
        ap = c.prepare_index_params()
        ap.add_index(field_name="pad", index_type="AUTOINDEX", metric_type="L2")
        self._call("creating the article collection", "create_collection", self.articles_name, schema=a,
                   index_params=ap, consistency_level="Strong")

    def build(self, articles: list[Article], embedder: Embedder, previous: StoreView | None, show_progress: bool,
              corpus: Path | None) -> MilvusView:
        """Drop and refill both collections with ``articles`` (every article embedded: vectors are
        not reused). Replicas reading meanwhile see a partial store; the manifest goes last."""
        s = self.settings
        seen: dict[str, Article] = {}
        for art in articles:
            if art.doc_id in seen:
                raise CorpusError(f"{seen[art.doc_id].path or 'an article'} and {art.path or 'another'} are both "
                                  f"article {art.doc_id!r}; doc ids must be unique")
            seen[art.doc_id] = art
        if s.chunk_tokens > embedder.max_tokens:
            raise ValueError(f"chunk_tokens must be <= {embedder.max_tokens} (the embedding model's limit), "
                             f"got {s.chunk_tokens}")
        self.create(embedder.dim)
        pending: list[tuple[Article, list[Chunk]]] = []
        n_pending = unsealed = 0
        for art in articles:
            chunks = chunk_article(art, embedder, s.chunk_tokens, s.chunk_overlap_tokens)
            pending.append((art, chunks))
            n_pending += len(chunks)
            if n_pending >= EMBED_BATCH_CHUNKS:
                unsealed = self._insert_embedding(pending, embedder, show_progress, unsealed)
                pending, n_pending = [], 0
        if pending:
            self._insert_embedding(pending, embedder, show_progress, unsealed)
        corpus_dir, corpus_rel = corpus_location(corpus, None)
        manifest = Manifest(embed_model=embedder.name, dim=embedder.dim, chunk_tokens=s.chunk_tokens,
                            chunk_overlap_tokens=s.chunk_overlap_tokens, index_type="milvus", fingerprints={},
                            n_chunks=0, created=time.time(), corpus_dir=corpus_dir, corpus_dir_from_index=corpus_rel,
                            format_version=FORMAT_VERSION)
        return self.finish_fill(manifest)

    def _insert_embedding(self, batch: list[tuple[Article, list[Chunk]]], embedder: Embedder, show_progress: bool,
                          unsealed: int) -> int:
        texts = [c.text for _, chunks in batch for c in chunks]
        vectors = (np.asarray(embedder.embed_batch(texts, show_progress=show_progress), dtype=np.float32) if texts
                   else np.zeros((0, embedder.dim), dtype=np.float32))
        rows, k = [], 0
        for art, chunks in batch:
            rows.append((art, [(c.start, c.end) for c in chunks], vectors[k : k + len(chunks)]))
            k += len(chunks)
        return self.insert_embedded(rows, unsealed)

    def insert_embedded(self, batch: Sequence[tuple[Article, Sequence[tuple[int, int]], np.ndarray]],
                        unsealed: int = 0) -> int:
        """Insert articles already chunked (``(start, end)`` spans) and embedded (one vector row
        per span) while filling a store, each as a new version; seal once ``unsealed`` (chunks
        inserted since the last seal, which this returns updated) reaches ``SEAL_EVERY_CHUNKS``."""
        written = time.time_ns()
        chunk_rows: list[dict[str, Any]] = []
        article_rows: list[dict[str, Any]] = []
        for art, spans, vectors in batch:
            if len(spans) != len(vectors):
                raise ValueError(f"{art.doc_id!r}: {len(spans)} chunks but {len(vectors)} vectors")
            version = uuid.uuid4().hex
            chunk_rows.extend(_chunk_rows(art, version, written, spans, vectors))
            article_rows.extend(_article_rows(art, version, written))
        self._insert(self.chunks_name, chunk_rows, timeout=BULK_TIMEOUT_S)
        self._insert(self.articles_name, article_rows, timeout=BULK_TIMEOUT_S)
        unsealed += len(chunk_rows)
        if unsealed >= SEAL_EVERY_CHUNKS:
            self.seal()
            return 0
        return unsealed

    def finish_fill(self, manifest: Manifest) -> MilvusView:
        """Seal what was inserted and record ``manifest`` (last: until then the store reads as a
        build that never finished), then open the store."""
        self.seal()
        data = {k: v for k, v in dataclasses.asdict(manifest).items() if k not in ("fingerprints", "n_chunks", "files")}
        self._call("saving the manifest", "alter_collection_properties", self.chunks_name,
                   properties={MANIFEST_PROPERTY: json.dumps(data, sort_keys=True)})
        return self.open()

    def seal(self) -> None:
        """Seal (flush) both collections' new rows into indexed segments (see ``SEAL_EVERY_CHUNKS``)."""
        for name in (self.chunks_name, self.articles_name):
            self._call(f"sealing {name}", "flush", name, timeout=BULK_TIMEOUT_S)
        self._writes_since_seal = 0

    def _insert(self, name: str, rows: list[dict[str, Any]], timeout: float | None = None) -> None:
        t = timeout if timeout is not None else self.settings.milvus_timeout_s
        for i in range(0, len(rows), INSERT_BATCH_ROWS):
            self._call(f"writing to {name}", "insert", name, rows[i : i + INSERT_BATCH_ROWS], timeout=t)

    # ------------------------------------------------------------ writes
    def write(self, view: StoreView, record: Record) -> StoreView:
        """Apply ``record``: a put commits when its article rows are in; older versions go after.

        Across replicas nothing is locked: each write stamps its rows with its replica's clock
        (``written``, ns) and removes only rows older than its own, so of two concurrent puts of
        one doc id the later stamp wins on every replica (with clocks out of step, the later stamp,
        not the later arrival), and both are acknowledged. A delete removes every row of the id,
        including those of a put still in flight on another replica. ``If-Match`` (checked by the
        pipeline just before) is therefore exact within one replica, whose writes are serialised,
        but only best effort across replicas: two replicas may both accept the same If-Match.

        Raises:
            StoreUnavailable: the write did not commit (nothing changed), or its outcome is unknown
                (the server did not answer the commit); repeating the write is safe either way.
        """
        key = f"doc_id == {literal(record.doc_id)}"
        if isinstance(record, DeleteRecord):
            if self.get_article(record.doc_id) is None:
                raise ValueError(f"the store does not hold {record.doc_id!r}")
            self._call("deleting an article", "delete", self.articles_name, filter=key)
            self._after_commit("deleting an article's chunks", self.chunks_name, key)
            self._writes_since_seal += 1
            return view
        if not isinstance(record, PutRecord):
            raise TypeError(f"unknown write {type(record).__name__}")
        dim = view.base_manifest.dim
        if record.vectors.shape[1] != dim:
            raise ValueError(f"{record.doc_id!r} has vectors of dimension {record.vectors.shape[1]}, the store {dim}")
        from qa.index import _meta_fields

        art = Article(record.doc_id, record.text, record.title, record.date, record.sha256, record.path,
                      **_meta_fields(record.meta))
        version, written = uuid.uuid4().hex, time.time_ns()
        self._insert(self.chunks_name, _chunk_rows(art, version, written, record.spans, record.vectors))
        self._insert(self.articles_name, _article_rows(art, version, written))
        older = f"{key} and written < {written}"  # a newer write from another replica stays
        self._after_commit("removing an article's older version", self.articles_name, older)
        self._after_commit("removing an article's older chunks", self.chunks_name, older)
        self._writes_since_seal += 1
        return view

    def _after_commit(self, what: str, name: str, expr: str) -> None:
        """Delete the rows a committed write left behind. They are never read (retrieval and
        reads keep only an article's newest complete version), so a failure is logged, not
        raised: the write is applied, and the next write of that id removes them."""
        try:
            self._call(what, "delete", name, filter=expr)
        except StoreUnavailable as e:
            log.warning("%s after a write was applied: %s; the rows are never read, and the next write of that "
                        "article removes them", what, e)

    # ------------------------------------------------------------ reads
    def get_article(self, doc_id: str) -> Article | None:
        """The article's newest complete version, or None."""
        rows = self._call("reading an article", "query", self.articles_name,
                          filter=f"doc_id == {literal(doc_id)}",
                          output_fields=["version", "written", "part", "parts", "text", "meta"])
        return _newest(doc_id, rows)

    def current_versions(self, doc_ids: Sequence[str]) -> dict[str, str]:
        """doc_id -> the version its article rows hold now (the newest), for those that exist."""
        if not doc_ids:
            return {}
        rows = self._call("reading article versions", "query", self.articles_name,
                          filter=f"part == 0 and doc_id in [{', '.join(literal(d) for d in sorted(set(doc_ids)))}]",
                          output_fields=["doc_id", "version", "written"])
        best: dict[str, tuple[int, str]] = {}
        for r in rows:
            if r["doc_id"] not in best or r["written"] > best[r["doc_id"]][0]:
                best[r["doc_id"]] = (r["written"], r["version"])
        return {d: v for d, (_, v) in best.items()}

    def has_article(self, doc_id: str) -> bool:
        rows = self._call("reading an article", "query", self.articles_name,
                          filter=f"part == 0 and doc_id == {literal(doc_id)}", output_fields=["doc_id"], limit=1)
        return bool(rows)

    def doc_ids(self) -> list[str]:
        """Every article's id, sorted."""
        return sorted({a.doc_id for a in self._current_articles(with_text=False)})

    def _current_articles(self, with_text: bool) -> Iterator[Article]:
        """Every article's newest version (without its text unless ``with_text``), page by page."""
        fields = ["id", "doc_id", "version", "written", "part", "parts", "meta"] + (["text"] if with_text else [])
        rows: dict[str, list[dict[str, Any]]] = {}
        last = -(2**63)
        while True:  # pages by primary key, as pymilvus's query iterator does (without its server-side calls)
            page = self._call("listing articles", "query", self.articles_name,
                              filter=f"id > {last}" + ("" if with_text else " and part == 0"), output_fields=fields,
                              limit=QUERY_BATCH_ROWS)
            if not page:
                break
            for r in page:
                rows.setdefault(r["doc_id"], []).append(r if with_text else {**r, "text": "", "parts": 1})
            last = max(int(r["id"]) for r in page)
        for doc_id, doc_rows in rows.items():
            art = _newest(doc_id, doc_rows)
            if art is not None:
                yield art

    def count_articles(self) -> int:
        return self._count(self.articles_name, "part == 0")

    def count_chunks(self) -> int:
        return self._count(self.chunks_name, "")

    def _count(self, name: str, expr: str) -> int:
        rows = self._call("counting rows", "query", name, filter=expr, output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def hybrid_search(self, qvecs: np.ndarray, questions: list[str], candidates_k: int, limit: int, rrf_k: int,
                      expr: str) -> list[list[dict[str, Any]]]:
        """Dense and BM25 top ``candidates_k`` of each question fused by Milvus's RRF ranker: the
        best ``limit`` chunk rows of each, with their fused score in ``distance``."""
        from pymilvus import AnnSearchRequest, RRFRanker

        reqs = [
            AnnSearchRequest(data=[v.tolist() for v in qvecs], anns_field="dense", param={"metric_type": "IP"},
                             limit=candidates_k, expr=expr),
            AnnSearchRequest(data=[sparse_terms(q) for q in questions], anns_field="sparse",
                             param={"metric_type": "BM25"}, limit=candidates_k, expr=expr),
        ]
        res = self._call("searching", "hybrid_search", self.chunks_name, reqs, RRFRanker(rrf_k),
                         limit=limit, output_fields=["doc_id", "version", "start", "end", "text", "dense"])
        return [list(r) for r in res]

    # ------------------------------------------------------------ the rest of the protocol
    def consistent(self, view: StoreView) -> bool:
        return True

    def version(self, view: StoreView) -> Hashable | None:
        return None  # a view reads the store as it is now: nothing to reload

    def latest_version(self) -> Hashable | None:
        return None

    def writer(self, what: str, timeout_s: float) -> AbstractContextManager[None]:
        # Replicas write concurrently; each write orders its versions by time (see write()).
        return contextlib.nullcontext()

    def retriever(self, view: StoreView, embedder: Embedder) -> MilvusRetriever:
        if not isinstance(view, MilvusView):
            raise TypeError(f"the Milvus store reads its own views, not a {type(view).__name__}")
        return MilvusRetriever(view, embedder, self.settings.candidates_k, self.settings.rrf_k)

    def needs_compaction(self, view: StoreView) -> bool:
        # Milvus compacts its own segments; what a replica does is seal its writes now and then
        return self._writes_since_seal >= SEAL_EVERY_WRITES

    def compact(self, view: StoreView, embedder: Embedder, corpus: Path | None) -> StoreView:
        self.seal()
        return view


def _settle_pymilvus_scipy_check() -> None:
    """Run pymilvus's one-time check for scipy.sparse now, while one thread holds the client lock.

    pymilvus makes that check lazily on the first search or insert (``SciPyHelper._init``), by
    executing ``scipy.sparse`` by hand outside the import lock; two request threads doing it at once
    can see a partially initialised ``scipy.sparse._bsr`` and fail the request ("partially initialized
    module 'scipy.sparse._bsr' has no attribute 'bsr_array'", seen under 32 clients on two replicas).
    A pymilvus without that helper has nothing to settle."""
    try:
        from pymilvus.client import utils
    except ImportError:
        return
    init = getattr(getattr(utils, "SciPyHelper", None), "_init", None)
    if callable(init):
        with contextlib.suppress(ImportError):
            import scipy.sparse  # noqa: F401 (fully imported under the import lock first)
        init()


def _unreachable(e: Exception) -> bool:
    """Whether ``e`` says the server cannot be reached (rather than that it refused the request)."""
    import grpc

    if isinstance(e, grpc.RpcError):
        return bool(e.code() == grpc.StatusCode.UNAVAILABLE)
    return getattr(e, "code", None) == CONNECT_FAILED


def _reason(e: Exception) -> str:
    """A one-line reason from a pymilvus or gRPC error."""
    message = getattr(e, "message", None) or str(e)
    return " ".join(str(message).split())[:300]


def sparse_terms(text: str) -> str:
    """``text``'s BM25 terms as the local store makes them, space-separated for Milvus's tokenizer
    (:data:`EMPTY_TERM` when none is left)."""
    return " ".join(bm25_tokens(text)) or EMPTY_TERM


def _chunk_rows(art: Article, version: str, written: int, spans: Sequence[tuple[int, int]],
                vectors: np.ndarray) -> list[dict[str, Any]]:
    """The chunk collection's rows of one version of ``art`` (every write path makes them here)."""
    day = (art.date or "")[:10]
    source_key = (art.source or "").casefold()
    return [{"doc_id": art.doc_id, "version": version, "written": written, "start": int(s), "end": int(e),
             "text": art.text[s:e], "terms": sparse_terms(art.text[s:e]), "day": day, "source_key": source_key,
             "dense": vectors[i].tolist()}
            for i, (s, e) in enumerate(spans)]


def _article_rows(art: Article, version: str, written: int) -> list[dict[str, Any]]:
    meta = {"title": art.title, "date": art.date, "sha256": art.sha256, "path": art.path, **art.meta()}
    parts = split_text(art.text)
    return [{"doc_id": art.doc_id, "version": version, "written": written, "part": i, "parts": len(parts),
             "text": t, "meta": meta if i == 0 else {}, "pad": PAD} for i, t in enumerate(parts)]


def _newest(doc_id: str, rows: Sequence[Mapping[str, Any]]) -> Article | None:
    """The article from its rows' newest version that has all its parts."""
    versions: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        versions.setdefault(r["version"], []).append(r)
    for parts in sorted(versions.values(), key=lambda p: -p[0]["written"]):
        parts = sorted(parts, key=lambda r: r["part"])
        if [r["part"] for r in parts] != list(range(parts[0]["parts"])):
            continue  # a write still inserting, or one that died half-way
        meta = parts[0]["meta"] or {}
        return Article(doc_id=doc_id, text="".join(r["text"] for r in parts), title=meta.get("title") or "",
                       date=meta.get("date"), sha256=meta.get("sha256") or "", path=meta.get("path") or "",
                       source=meta.get("source"), url=meta.get("url"), author=meta.get("author"))
    return None


class MilvusArticles(Mapping[str, Article]):
    """``doc_id -> Article`` read from the store on each access (another replica's writes show at once)."""

    def __init__(self, store: MilvusStore) -> None:
        self._store = store

    def __getitem__(self, doc_id: str) -> Article:
        art = self._store.get_article(doc_id)
        if art is None:
            raise KeyError(doc_id)
        return art

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and self._store.has_article(doc_id)

    def __iter__(self) -> Iterator[str]:
        return iter(self._store.doc_ids())

    def __len__(self) -> int:
        return self._store.count_articles()


class MilvusView:
    """The store as it is now: articles and chunk counts are read from Milvus on each access."""

    def __init__(self, store: MilvusStore, manifest: Manifest) -> None:
        self.store = store
        self._manifest = manifest
        self._articles = MilvusArticles(store)

    @property
    def articles(self) -> MilvusArticles:
        return self._articles

    @property
    def n_chunks(self) -> int:
        return self.store.count_chunks()

    @property
    def base_manifest(self) -> Manifest:
        return self._manifest

    @property
    def manifest(self) -> Manifest:
        """Every article's fingerprint, read from the store (one pass over the articles)."""
        return self.store.status_manifest()


class MilvusRetriever(FusedRetrieval):
    """Hybrid retrieval in Milvus: dense (inner product) and BM25 top ``candidates_k`` fused by
    Milvus's RRF ranker (``rrf_k``), filters applied inside both searches.

    ``Hit.score`` is the fused RRF score, ``Hit.dense`` the question-chunk cosine (from the
    returned vector), as in :class:`qa.retrieve.HybridRetriever`.
    """

    def __init__(self, view: MilvusView, embedder: Embedder, candidates_k: int, rrf_k: int,
                 cache_size: int = 1024) -> None:
        super().__init__(embedder, candidates_k, rrf_k, cache_size)
        self._view = view

    @property
    def index(self) -> MilvusView:
        return self._view

    def retrieve_batch(self, questions: list[str], k: int, qvecs: np.ndarray | None = None,
                       filters: Filters | None = None) -> list[list[Hit]]:
        """The top ``k`` chunks of each question (of the articles ``filters`` lets through)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not questions or (filters is not None and filters.doc_ids is not None and not filters.doc_ids):
            return [[] for _ in questions]
        if qvecs is None:
            qvecs = self.embed_questions(questions)
        store = self._view.store
        # Twice k: chunks of an article being rewritten this instant are dropped below.
        results = store.hybrid_search(np.asarray(qvecs, dtype=np.float32), questions, max(self.candidates_k, k),
                                      2 * k, self.rrf_k, filter_expression(filters))
        current = store.current_versions([r["entity"]["doc_id"] for res in results for r in res])
        out = []
        for qv, res in zip(qvecs, results, strict=True):
            rows = [(float(r["distance"]), r["entity"]) for r in res
                    if current.get(r["entity"]["doc_id"]) == r["entity"]["version"]]
            # Ties by chunk (doc_id, start), as the local store orders them.
            rows.sort(key=lambda se: (-se[0], se[1]["doc_id"], se[1]["start"]))
            hits = []
            for rank, (score, e) in enumerate(rows[:k]):
                cos = float(np.dot(np.asarray(e["dense"], dtype=np.float32), qv))
                hits.append(Hit(Chunk(e["doc_id"], int(e["start"]), int(e["end"]), e["text"]), score, cos, rank))
            out.append(hits)
        return out

    def retrieve(self, question: str, k: int, filters: Filters | None = None) -> list[Hit]:
        return self.retrieve_batch([question], k, filters=filters)[0]
