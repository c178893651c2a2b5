"""Part 2, side by side: one synthetic corpus in each store (local, Milvus Lite embedded, a
``milvus-lite server`` on loopback), with retrieval and writes through the store protocol as the
product runs them."""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qa.bench.config import BENCH_MILVUS_TIMEOUT_S, MILVUS_SERVER_START_S, STORE_WARMUP_QUERIES, Say
from qa.bench.measure import peak_rss_mib, reset_peak_rss
from qa.bench.results import StoreRun
from qa.embed import Embedder
from qa.index import Manifest
from qa.journal import PutRecord
from qa.settings import Settings
from qa.types import Article, Chunk

if TYPE_CHECKING:
    from qa.store.milvus import MilvusStore, MilvusView

MILVUS_KINDS = ("milvus-lite", "milvus-server")
FILL_BATCH_CHUNKS = 1_024  # chunk rows per insert round, as MilvusStore.build inserts an embedding batch


def milvus_missing() -> str | None:
    """Why no Milvus store can be benchmarked here, or None."""
    try:
        import pymilvus  # noqa: F401
    except ImportError:
        return "pymilvus is not installed (pip install -e '.[milvus]')"
    return None


def milvus_server_command() -> list[str] | None:
    """The ``milvus-lite`` executable, or None (:func:`qa.store.milvus_server.command`)."""
    from qa.store import milvus_server

    return milvus_server.command()


def write_records(articles: Sequence[Article], vectors: np.ndarray) -> list[PutRecord]:
    """One ``PutRecord`` per article (as ``qa.index``'s writers make them), its chunks one per line
    of the text and its vectors ``vectors`` in order."""
    records, row = [], 0
    for i, a in enumerate(articles):
        spans, pos = [], 0
        for part in a.text.split("\n"):
            spans.append((pos, pos + len(part)))
            pos += len(part) + 1
        records.append(PutRecord(f"written_{i:04d}", a.text, a.title, None, a.sha256, "", spans,
                                 vectors[row : row + len(spans)]))
        row += len(spans)
    return records


def fill_milvus(store: MilvusStore, manifest: Manifest, articles: Sequence[Article], chunks: Sequence[Chunk],
                vectors: np.ndarray) -> MilvusView:
    """Replace what ``store`` holds with ``articles`` already chunked (``chunks``, grouped by
    article in order) and embedded (``vectors``, one row per chunk), through the store's own
    schema and insert path (``MilvusStore.build`` without the chunking and embedding), then seal
    the segments and record ``manifest`` so that ``store.open()`` reads it.

    Sealing (flush, every ``qa.store.milvus.SEAL_EVERY_CHUNKS`` and at the end) builds the sealed segments' indexes.
    Milvus Lite seals by itself only at 128 MiB of unsealed rows or when its process closes the
    store (so after ``qa index build`` exits); until then every BM25 search rebuilds an index of
    the unsealed rows.
    """
    from qa.store.milvus import FORMAT_VERSION

    if len(chunks) != len(vectors):
        raise ValueError(f"one vector per chunk: {len(chunks)} chunks, {len(vectors)} vectors")
    by_id = {a.doc_id: a for a in articles}
    store.create(manifest.dim)
    batch: list[tuple[Article, list[tuple[int, int]], np.ndarray]] = []
    n_batch = unsealed = 0
    start = 0
    while start < len(chunks):
        doc_id = chunks[start].doc_id
        end = start
        while end < len(chunks) and chunks[end].doc_id == doc_id:
            end += 1
        batch.append((by_id[doc_id], [(c.start, c.end) for c in chunks[start:end]], vectors[start:end]))
        n_batch += end - start
        start = end
        if n_batch >= FILL_BATCH_CHUNKS or start == len(chunks):
            unsealed = store.insert_embedded(batch, unsealed)
            batch, n_batch = [], 0
    return store.finish_fill(dataclasses.replace(manifest, index_type="milvus", format_version=FORMAT_VERSION,
                                                 created=time.time()))


def _process_peak_mib(pid: int) -> float | None:
    """Peak RSS (VmHWM) of process ``pid`` in MiB, None where /proc cannot tell."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _release_embedded(path: Path) -> None:
    """Stop the in-process Milvus Lite of ``path``: closing the client leaves it running until the
    process exits, when it would write its data folder again after the folder is gone."""
    with contextlib.suppress(ImportError):
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(str(path))


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def bench_milvus(kind: str, settings: Settings, manifest: Manifest, articles: Sequence[Article],
                 chunks: Sequence[Chunk], vectors: np.ndarray, questions: Sequence[str], qvecs: np.ndarray,
                 records: Sequence[PutRecord], embedder: Embedder, say: Say) -> StoreRun:
    """Fill a fresh Milvus store of ``kind`` (``milvus-lite``: embedded in a temporary ``.db``;
    ``milvus-server``: a ``milvus-lite server`` process on loopback) and time retrieval and writes."""
    from qa.store.milvus import MilvusStore

    if kind not in MILVUS_KINDS:
        raise ValueError(f"kind must be one of {MILVUS_KINDS}, got {kind!r}")
    n = len(chunks)
    with tempfile.TemporaryDirectory(prefix="qa-bench-milvus-") as tmp:
        data = Path(tmp) / ("milvus.db" if kind == "milvus-lite" else "server")
        with contextlib.ExitStack() as stack:
            pid = None
            if kind == "milvus-server":
                from qa.store import milvus_server

                data.mkdir()
                uri, pid = stack.enter_context(milvus_server.running(data, MILVUS_SERVER_START_S))
            else:
                uri = str(data)
                stack.callback(_release_embedded, data)
            store = MilvusStore(settings.model_copy(update={"store": "milvus", "milvus_uri": uri,
                                                            "milvus_collection": "bench",
                                                            "milvus_timeout_s": BENCH_MILVUS_TIMEOUT_S}))
            stack.callback(store.close)
            store.client()  # connected (Milvus Lite started, its modules loaded) before memory is counted
            base = reset_peak_rss()
            t = time.perf_counter()
            view = fill_milvus(store, manifest, articles, chunks, vectors)
            fill_s = time.perf_counter() - t
            say(f"  {n} chunks: {kind} filled in {fill_s:.1f} s ({n / fill_s:,.0f} chunks/s)")
            retriever = store.retriever(view, embedder)
            first_ms = None
            for q, v in list(zip(questions, qvecs, strict=True))[:STORE_WARMUP_QUERIES]:
                t = time.perf_counter()
                retriever.retrieve_batch([q], settings.top_k, v[None, :])
                first_ms = first_ms if first_ms is not None else (time.perf_counter() - t) * 1000.0
            times = []
            for q, v in zip(questions, qvecs, strict=True):
                t = time.perf_counter()
                hits = retriever.retrieve_batch([q], settings.top_k, v[None, :])
                times.append((time.perf_counter() - t) * 1000.0)
                if not hits[0]:
                    raise RuntimeError(f"{kind} found nothing for {q!r} in {n} chunks")
            say(f"  {n} chunks: {kind} retrieval p50 {np.median(times):.2f} ms")
            writes = []
            for record in records:
                t = time.perf_counter()
                store.write(view, record)  # a Milvus view follows the store: the same view reads the write
                writes.append((time.perf_counter() - t) * 1000.0)
            say(f"  {n} chunks: {kind} write p50 {np.median(writes):.2f} ms")
            memory = _process_peak_mib(pid) if pid is not None else peak_rss_mib() - base
            disk = _tree_bytes(data if data.is_dir() else data.parent) / n
    return StoreRun(store=kind, chunks=n, fill_s=fill_s, fill_chunks_per_s=n / fill_s, queries=len(times),
                    retrieve_p50_ms=float(np.median(times)), retrieve_p95_ms=float(np.percentile(times, 95)),
                    writes=len(writes), write_p50_ms=float(np.median(writes)),
                    write_p95_ms=float(np.percentile(writes, 95)), memory_mib=memory, disk_bytes_per_chunk=disk,
                    first_retrieve_ms=first_ms)


def local_run(n_chunks: int, fill_s: float, hybrid_ms: Sequence[float], write_ms: Sequence[float],
              disk_bytes_per_chunk: float | None) -> StoreRun:
    """The local store's column, from the scale part's own measurements on the auto index."""
    return StoreRun(store="local", chunks=n_chunks, fill_s=fill_s, fill_chunks_per_s=n_chunks / fill_s,
                    queries=len(hybrid_ms), retrieve_p50_ms=float(np.median(hybrid_ms)),
                    retrieve_p95_ms=float(np.percentile(hybrid_ms, 95)), writes=len(write_ms),
                    write_p50_ms=float(np.median(write_ms)), write_p95_ms=float(np.percentile(write_ms, 95)),
                    memory_mib=None, disk_bytes_per_chunk=disk_bytes_per_chunk)

