"""Index stage: FAISS (dense) + BM25 (sparse) + chunk metadata, persisted atomically.

On disk, ``index/CURRENT`` names the version folder in use (``v-...``). A build writes a new
version folder completely (every file fsynced, checksummed in ``manifest.json``), then replaces
``CURRENT`` atomically, so a crash at any point leaves the previous index loadable and a
half-written one never referenced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qa.chunk import chunk_article
from qa.embed import Embedder
from qa.errors import IndexCorrupt, IndexMissing, IndexStale
from qa.types import Article, Chunk

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
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

_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "his",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "she",
        "that",
        "the",
        "their",
        "them",
        "they",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
    ]
)
_TOKEN_RE = re.compile(r"\w+", re.UNICODE)


def bm25_tokens(text: str) -> list[str]:
    """Lower-cased word tokens without stopwords, with a light plural/possessive strip."""
    out = []
    for t in _TOKEN_RE.findall(text.lower()):
        if t in _STOPWORDS:
            continue
        if len(t) > 3 and t.endswith("s") and not t.endswith("ss"):
            t = t[:-1]
        out.append(t)
    return out


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

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse a manifest; ValueError if it is not one (a field missing or of the wrong type)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("manifest is not a JSON object")
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


# What each manifest field must hold (a garbled manifest can still be valid JSON).
_MANIFEST_FIELDS: dict[str, type | tuple[type, ...]] = {
    "embed_model": str, "dim": int, "chunk_tokens": int, "chunk_overlap_tokens": int, "index_type": str,
    "fingerprints": dict, "n_chunks": int, "files": dict, "format_version": int, "created": (int, float),
}


@dataclass
class SearchIndex:
    """A loaded index: articles, chunks, dense vectors (FAISS) and BM25."""

    manifest: Manifest
    articles: dict[str, Article]
    chunks: list[Chunk]
    faiss_index: Any
    bm25: Any
    path: Path | None = None

    @property
    def n_chunks(self) -> int:
        return len(self.chunks)

    def vectors(self) -> np.ndarray:
        """All chunk vectors, row i for chunk i."""
        n = self.faiss_index.ntotal
        if n == 0:
            return np.zeros((0, self.manifest.dim), dtype=np.float32)
        return np.asarray(self.faiss_index.reconstruct_n(0, n), dtype=np.float32)


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


def make_bm25(chunks: list[Chunk]) -> Any:
    import bm25s

    retriever = bm25s.BM25()
    retriever.index([bm25_tokens(c.text) or ["\x00empty"] for c in chunks], show_progress=False)
    return retriever


def build_index(
    articles: list[Article],
    embedder: Embedder,
    chunk_tokens: int,
    chunk_overlap_tokens: int,
    hnsw_min_chunks: int,
    previous: SearchIndex | None = None,
    show_progress: bool = False,
) -> SearchIndex:
    """Chunk, embed and index ``articles``.

    Vectors of unchanged articles are reused from ``previous`` when it was built with the same
    model and chunk settings, so adding one article to a large index embeds only that article.
    """
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
        rows: dict[str, list[int]] = {}
        for i, c in enumerate(previous.chunks):
            rows.setdefault(c.doc_id, []).append(i)
        for doc_id, idx in rows.items():
            if doc_id in previous.articles:
                reuse[previous.articles[doc_id].sha256] = ([previous.chunks[i] for i in idx], old_vecs[idx])

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
    return SearchIndex(manifest, {a.doc_id: a for a in articles}, chunks, faiss_index, make_bm25(chunks))


# ---------------------------------------------------------------- saving


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems refuse to fsync directories
        _fsync_file(path)


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
    _fsync_dir(path.parent)


def save_index(index: SearchIndex, index_dir: Path | str) -> Path:
    """Persist ``index`` as a new version under ``index_dir`` and make it current, atomically."""
    import faiss

    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    name = f"v-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    tmp = index_dir / f".tmp-{name}"
    tmp.mkdir()
    try:
        with (tmp / ARTICLES).open("w", encoding="utf-8") as f:
            for a in index.articles.values():
                f.write(
                    json.dumps(
                        {
                            "doc_id": a.doc_id,
                            "title": a.title,
                            "date": a.date,
                            "sha256": a.sha256,
                            "path": a.path,
                            "text": a.text,
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                )
        doc_ids = sorted(index.articles)
        doc_pos = {d: i for i, d in enumerate(doc_ids)}
        with (tmp / CHUNKS).open("wb") as f:
            np.savez(
                f,
                doc_ids=np.array(doc_ids, dtype=object).astype(str),
                doc=np.array([doc_pos[c.doc_id] for c in index.chunks], dtype=np.int32),
                start=np.array([c.start for c in index.chunks], dtype=np.int64),
                end=np.array([c.end for c in index.chunks], dtype=np.int64),
            )
        faiss.write_index(index.faiss_index, str(tmp / VECTORS))
        index.bm25.save(str(tmp / BM25_DIR), show_progress=False)
        files: dict[str, dict[str, Any]] = {}
        for p in sorted(tmp.rglob("*")):
            if p.is_file():
                _fsync_file(p)
                files[p.relative_to(tmp).as_posix()] = {"bytes": p.stat().st_size, "sha256": _sha256_file(p)}
        index.manifest.files = files
        (tmp / MANIFEST).write_text(index.manifest.to_json(), encoding="utf-8")
        _fsync_file(tmp / MANIFEST)
        _fsync_dir(tmp / BM25_DIR)
        _fsync_dir(tmp)
        final = index_dir / name
        os.replace(tmp, final)
        _fsync_dir(index_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_atomic(index_dir / CURRENT, (name + "\n").encode())
    index.path = final
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
        raise IndexCorrupt(f"{path} is unreadable ({type(e).__name__}); run `qa index build <corpus folder>`") from e
    if manifest.format_version != FORMAT_VERSION:
        raise IndexStale(f"index format {manifest.format_version} is not {FORMAT_VERSION}; rebuild it")
    return manifest


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
    """Load and verify the current index.

    Raises:
        IndexMissing: nothing built yet.
        IndexCorrupt: a file is missing, truncated or garbled (the message names it).
    """
    import bm25s
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
                    d["doc_id"], d["text"], d["title"], d["date"], d["sha256"], d.get("path", "")
                )
        with np.load(version / CHUNKS, allow_pickle=False) as z:
            doc_ids = [str(x) for x in z["doc_ids"]]
            doc, start, end = z["doc"], z["start"], z["end"]
        chunks = []
        for di, s, e in zip(doc.tolist(), start.tolist(), end.tolist(), strict=True):
            a = articles[doc_ids[di]]
            chunks.append(Chunk(a.doc_id, s, e, a.text[s:e]))
        faiss_index = faiss.read_index(str(version / VECTORS))
        bm25 = bm25s.BM25.load(str(version / BM25_DIR), show_progress=False, verbosity=0)
    except (OSError, ValueError, KeyError, IndexError, RuntimeError, TypeError) as e:
        raise IndexCorrupt(f"index at {version} is unreadable ({type(e).__name__}: {e}); rebuild it") from e
    if faiss_index.ntotal != len(chunks) or len(chunks) != manifest.n_chunks:
        raise IndexCorrupt(f"index at {version} has {faiss_index.ntotal} vectors and {len(chunks)} chunks, its "
                           f"manifest says {manifest.n_chunks}; rebuild it")
    return SearchIndex(manifest, articles, chunks, faiss_index, bm25, version)


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
