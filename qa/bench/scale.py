"""Part 2: index build with the real embedder, then synthetic corpora (Zipf text, clustered
vectors) at each size: flat vs approximate FAISS indexes, BM25, fused retrieval, bytes per chunk."""

from __future__ import annotations

import gc
import hashlib
import math
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.bench.config import (
    CHUNK_WORDS_MEAN,
    CHUNK_WORDS_SD,
    CHUNKS_PER_ARTICLE,
    HNSW_EF_SWEEP,
    IVF_NPROBE_SWEEP,
    IVF_TRAIN_PER_LIST,
    MILVUS_MAX_CHUNKS,
    MIX_NOISE,
    MIX_SECOND_TOPIC_MAX,
    MIX_SUBTOPIC_WEIGHT,
    MIX_SUBTOPICS,
    MIX_TOPICS,
    QUERY_WORDS,
    RECALL_AT,
    TARGET_RECALL,
    WRITE_SAMPLES,
    ZIPF_EXPONENT,
    ZIPF_VOCAB,
    Say,
)
from qa.bench.measure import peak_rss_mib, reset_peak_rss
from qa.bench.results import BuildResult, DenseRun, ScaleResult
from qa.bench.stores import MILVUS_KINDS, bench_milvus, local_run, write_records
from qa.bm25 import RowView, best_rows
from qa.embed import Embedder
from qa.index import (
    EMPTY_TOKEN,
    Manifest,
    SearchIndex,
    bm25_tokens,
    faiss_index_kind,
    make_bm25,
    make_faiss_index,
    save_index,
)
from qa.journal import PutRecord
from qa.retrieve import HybridRetriever
from qa.settings import Settings
from qa.types import Article, Chunk


def bench_build(embedder: Embedder, settings: Settings, corpus: Path, sample: int) -> tuple[list[BuildResult],
                                                                                            float]:
    """Real-embedder index build on the seeds, and embedding throughput on a synthetic text sample."""
    from qa.corpus import load_corpus
    from qa.index import build_index

    embedder.load()
    articles = load_corpus(corpus)
    out = []
    base = reset_peak_rss()
    t = time.perf_counter()
    index = build_index(articles, embedder, settings.chunk_tokens, settings.chunk_overlap_tokens,
                        settings.hnsw_min_chunks)
    secs = time.perf_counter() - t
    peak = peak_rss_mib()
    out.append(BuildResult("seeds (chunk + embed + FAISS + BM25)", index.n_chunks, secs, index.n_chunks / secs,
                           peak, peak - base))
    # Real words only (the seeds' vocabulary) and the seed chunks' length, so that the sample has the
    # token count per chunk of real articles; made-up words would split into many word pieces.
    seed_texts = [a.text for a in articles]
    real_words = len({w for t in seed_texts for w in re.findall(r"[A-Za-z]+", t)})
    text = ZipfText(zipf_vocabulary(seed_texts, real_words))
    lengths = [len(c.text.split()) for c in index.chunks]
    texts = text.chunks(np.random.default_rng(5), sample, float(np.mean(lengths)), float(np.std(lengths)))
    sample_tokens = float(np.mean(embedder.count_tokens(texts)))
    seed_tokens = float(np.mean(embedder.count_tokens([c.text for c in index.chunks])))
    base = reset_peak_rss()
    t = time.perf_counter()
    embedder.embed_batch(texts)
    secs = time.perf_counter() - t
    peak = peak_rss_mib()
    out[0].label += f", {seed_tokens:.0f} tokens/chunk"
    out.append(BuildResult(f"seed-vocabulary Zipf text (embedding only), {sample_tokens:.0f} tokens/chunk", sample,
                           secs, sample / secs, peak, peak - base))
    return out, sample / secs


def zipf_vocabulary(seed_texts: Sequence[str], size: int) -> list[str]:
    """The seeds' words by frequency, then made-up words, ``size`` in all."""
    from collections import Counter

    counts = Counter(w for t in seed_texts for w in re.findall(r"[A-Za-z]+", t))
    words = [w for w, _ in counts.most_common()][:size]
    seen = set(words)
    rng = np.random.default_rng(11)
    letters = np.array(list("etaoinshrdlcumwfgypbvk"))
    while len(words) < size:
        w = "".join(rng.choice(letters, int(rng.integers(4, 11))))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


class ZipfText:
    """Article-like text: words drawn by a Zipf law over a fixed vocabulary."""

    def __init__(self, vocabulary: Sequence[str], exponent: float = ZIPF_EXPONENT) -> None:
        self.words = np.asarray(vocabulary, dtype=object)
        weights = 1.0 / np.arange(1, len(vocabulary) + 1) ** exponent
        self.cdf = np.cumsum(weights / weights.sum())

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.minimum(np.searchsorted(self.cdf, rng.random(n)), len(self.cdf) - 1)

    def chunks(self, rng: np.random.Generator, n: int, words_mean: float = CHUNK_WORDS_MEAN,
               words_sd: float = CHUNK_WORDS_SD) -> list[str]:
        lengths = np.clip(rng.normal(words_mean, words_sd, n).astype(int), 20, None)
        ids = self.sample(rng, int(lengths.sum()))
        words = self.words[ids]
        out, pos = [], 0
        for length in lengths.tolist():
            part = words[pos : pos + length]
            pos += length
            out.append(" ".join(part.tolist()) + ".")
        return out


def synthetic_corpus(text: ZipfText, n_chunks: int, seed: int) -> tuple[list[Article], list[Chunk]]:
    """``n_chunks`` chunks in articles of ``CHUNKS_PER_ARTICLE``, offsets exact into article text."""
    rng = np.random.default_rng(seed)
    bodies = text.chunks(rng, n_chunks)
    articles: list[Article] = []
    chunks: list[Chunk] = []
    for a in range(0, n_chunks, CHUNKS_PER_ARTICLE):
        doc_id = f"syn_{a // CHUNKS_PER_ARTICLE:07d}"
        parts = bodies[a : a + CHUNKS_PER_ARTICLE]
        body = "\n".join(parts)
        pos = 0
        for p in parts:
            chunks.append(Chunk(doc_id, pos, pos + len(p), p))
            pos += len(p) + 1
        sha = hashlib.sha256(body.encode("utf-8")).hexdigest()
        articles.append(Article(doc_id, body, parts[0][:60], None, sha))
    return articles, chunks


def mixture_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors from a two-level Gaussian mixture (see ``MIX_*``); the centres are fixed, so
    queries drawn with another seed come from the same distribution as the corpus."""
    centres = np.random.default_rng(1234)
    topics = centres.standard_normal((MIX_TOPICS, dim)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    subs = centres.standard_normal((MIX_TOPICS * MIX_SUBTOPICS, dim)).astype(np.float32)
    subs /= np.linalg.norm(subs, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for lo in range(0, n, step):
        m = min(step, n - lo)
        sub = rng.integers(0, MIX_TOPICS * MIX_SUBTOPICS, m)
        second = rng.integers(0, MIX_TOPICS, m)
        w2 = rng.uniform(0.0, MIX_SECOND_TOPIC_MAX, (m, 1)).astype(np.float32)
        x = topics[sub // MIX_SUBTOPICS] + w2 * topics[second] + MIX_SUBTOPIC_WEIGHT * subs[sub]
        x += (MIX_NOISE / math.sqrt(dim)) * rng.standard_normal((m, dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[lo : lo + m] = x
    return out


SYNTHETIC_DESCRIPTION = (
    f"vectors: {MIX_TOPICS}-topic x {MIX_SUBTOPICS}-subtopic Gaussian mixture on the unit sphere with a second "
    f"topic mixed in (weight U(0,{MIX_SECOND_TOPIC_MAX})), noise {MIX_NOISE}; text: Zipf(a={ZIPF_EXPONENT}) over "
    f"{ZIPF_VOCAB} words (seed words first), {CHUNK_WORDS_MEAN}+-{CHUNK_WORDS_SD} words/chunk, "
    f"{CHUNKS_PER_ARTICLE} chunks/article; queries: fresh mixture draws and {QUERY_WORDS}-word Zipf questions"
)


class _VectorsOnly:
    """An Embedder stand-in for retrieval on precomputed question vectors (never embeds)."""

    name = "synthetic"
    max_tokens = 10**6

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def load(self) -> None:
        pass

    def embed_batch(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        raise RuntimeError("synthetic benchmark: question vectors are given, not embedded")

    def embed(self, text: str) -> np.ndarray:
        raise RuntimeError("synthetic benchmark: question vectors are given, not embedded")

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]


def _dense_run(index: Any, queries: np.ndarray, k: int, truth: np.ndarray | None) -> tuple[list[float], float]:
    """Single-question search latencies (ms) and recall@10 against ``truth`` (1.0 when None)."""
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        _, ids = index.search(q[None, :], k)
        times.append((time.perf_counter() - t) * 1000.0)
        found.append(ids[0][:RECALL_AT])
    if truth is None:
        return times, 1.0
    rec = [len(set(f.tolist()) & set(t.tolist())) / RECALL_AT for f, t in zip(found, truth, strict=True)]
    return times, float(np.mean(rec))


def _hybrid_run(index: SearchIndex, questions: list[str], qvecs: np.ndarray, settings: Settings) -> list[float]:
    retriever = HybridRetriever(index, _VectorsOnly(qvecs.shape[1]), settings.candidates_k, settings.rrf_k)
    times = []
    for q, v in zip(questions, qvecs, strict=True):
        t = time.perf_counter()
        retriever.retrieve_batch([q], settings.top_k, v[None, :])
        times.append((time.perf_counter() - t) * 1000.0)
    return times


def make_ivf(vectors: np.ndarray, nlist: int) -> Any:
    """IVF-Flat (inner product) trained on a sample of ``IVF_TRAIN_PER_LIST`` vectors per list."""
    import faiss

    dim = vectors.shape[1]
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    n_train = min(len(vectors), IVF_TRAIN_PER_LIST * nlist)
    index.train(vectors[np.sort(rng.choice(len(vectors), n_train, replace=False))])
    index.add(vectors)
    index.make_direct_map()  # reconstruct(id), which retrieval uses for BM25-only hits
    return index


def _file_bytes(root: Path) -> dict[str, int]:
    sizes = {"vectors": 0, "chunk_metadata": 0, "bm25": 0, "articles": 0, "manifest": 0}
    for p in root.rglob("*"):
        if not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        key = ("vectors" if rel == "vectors.faiss" else "chunk_metadata" if rel == "chunks.npz"
               else "bm25" if rel.startswith("bm25/") else "articles" if rel == "articles.jsonl" else "manifest")
        sizes[key] += p.stat().st_size
    return sizes


def scale_one(n_chunks: int, settings: Settings, ann: Sequence[str], n_queries: int, save_max: int,
              embed_chunks_per_s: float | None, say: Say, bytes_hint: dict[str, float] | None = None,
              stores: Sequence[str] = ("local",), milvus_max: int = MILVUS_MAX_CHUNKS) -> ScaleResult:
    """Every measurement at one synthetic corpus size (run it in a fresh process for its peak RSS).

    ``stores``: the stores to compare side by side (``local``, ``milvus-lite``, ``milvus-server``);
    the Milvus ones only up to ``milvus_max`` chunks.
    """
    dim = 384
    t = time.perf_counter()
    seeds = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(Path(settings.corpus_dir).glob("*"))
             if p.is_file()]
    text = ZipfText(zipf_vocabulary(seeds, ZIPF_VOCAB))
    articles, chunks = synthetic_corpus(text, n_chunks, seed=1)
    vectors = mixture_vectors(n_chunks, dim, seed=2)
    qvecs = mixture_vectors(n_queries, dim, seed=3)
    qrng = np.random.default_rng(4)
    questions = [" ".join(text.words[text.sample(qrng, QUERY_WORDS)].tolist()) + "?" for _ in range(n_queries)]
    generate_s = time.perf_counter() - t
    gc.collect()
    reset_peak_rss()
    say(f"  {n_chunks} chunks: generated in {generate_s:.1f} s")

    t = time.perf_counter()
    bm25 = make_bm25(chunks)
    bm25_build_s = time.perf_counter() - t
    tokens = [bm25_tokens(q) or [EMPTY_TOKEN] for q in questions]
    ck = min(settings.candidates_k, n_chunks)
    view = RowView(n_chunks, None, n_chunks, int(bm25.doc_lengths(n_chunks).sum()))
    bm_times: list[float] = []
    score_times: list[float] = []
    for tok in tokens:
        t = time.perf_counter()
        bm25.top_k(tok, ck, view)
        bm_times.append((time.perf_counter() - t) * 1000.0)
        t = time.perf_counter()
        best_rows(*bm25.score(tok, view), ck)  # every row scored, then the best (top_k before pruning)
        score_times.append((time.perf_counter() - t) * 1000.0)
    say(f"  {n_chunks} chunks: BM25 built in {bm25_build_s:.1f} s, p50 {np.median(bm_times):.2f} ms")

    manifest = Manifest(embed_model="synthetic", dim=dim, chunk_tokens=settings.chunk_tokens,
                        chunk_overlap_tokens=settings.chunk_overlap_tokens, index_type="flat",
                        fingerprints={a.doc_id: a.sha256 for a in articles}, n_chunks=n_chunks)
    by_id = {a.doc_id: a for a in articles}
    runs: list[DenseRun] = []

    t = time.perf_counter()
    flat, _ = make_faiss_index(vectors, n_chunks + 1)
    flat_build_s = time.perf_counter() - t
    flat_times, _ = _dense_run(flat, qvecs, ck, None)
    _, truth = flat.search(qvecs, RECALL_AT)
    flat_index = SearchIndex.create(manifest, by_id, chunks, flat, bm25)
    hyb = _hybrid_run(flat_index, questions, qvecs, settings)
    hybrid_times = {"flat": hyb}
    runs.append(DenseRun("flat", "exact", flat_build_s, float(np.median(flat_times)),
                         float(np.percentile(flat_times, 95)), 1.0, float(np.median(hyb)),
                         float(np.percentile(hyb, 95))))
    say(f"  {n_chunks} chunks: flat p50 {runs[-1].dense_p50_ms:.2f} ms, hybrid p50 {runs[-1].hybrid_p50_ms:.2f} ms")

    auto_kind = faiss_index_kind(n_chunks, settings.hnsw_min_chunks)
    built: dict[str, tuple[Any, float]] = {}
    if "hnsw" in ann:
        t = time.perf_counter()
        hnsw, _ = make_faiss_index(vectors, 1)  # the product's HNSW with its own parameters
        built["hnsw"] = (hnsw, time.perf_counter() - t)
    if "ivf" in ann:
        nlist = ivf_nlist(n_chunks)
        t = time.perf_counter()
        built["ivf"] = (make_ivf(vectors, nlist), time.perf_counter() - t)
    del vectors  # every index holds its own copy; at 1M chunks this is 1.5 GB
    gc.collect()
    for kind, (index, build_s) in built.items():
        product = _search_param(index, kind) if kind == "hnsw" else None
        sweep = HNSW_EF_SWEEP if kind == "hnsw" else IVF_NPROBE_SWEEP
        kind_runs: dict[int, DenseRun] = {}
        for value in sorted(set(sweep) | ({product} if product is not None else set())):
            _set_search_param(index, kind, value)
            times, rec = _dense_run(index, qvecs, ck, truth)
            kind_runs[value] = DenseRun(kind, _param_label(index, kind, value), build_s, float(np.median(times)),
                                        float(np.percentile(times, 95)), rec)
            say(f"  {n_chunks} chunks: {kind} {kind_runs[value].params}: build {build_s:.1f} s, "
                f"p50 {kind_runs[value].dense_p50_ms:.2f} ms, recall@10 {rec:.3f}")
        # Fused latency at the product's setting, or else at the cheapest one that meets the recall target.
        good = [v for v, r in sorted(kind_runs.items()) if r.recall_at_10 >= TARGET_RECALL]
        chosen, role = (product, "product") if product is not None else (
            (good[0], "cheapest meeting recall target") if good else (max(kind_runs), "highest swept"))
        _set_search_param(index, kind, chosen)
        h = _hybrid_run(SearchIndex.create(manifest, by_id, chunks, index, bm25), questions, qvecs, settings)
        hybrid_times[kind] = h
        kind_runs[chosen].hybrid_p50_ms, kind_runs[chosen].hybrid_p95_ms = float(np.median(h)), float(
            np.percentile(h, 95))
        kind_runs[chosen].role = role
        runs.extend(kind_runs.values())
    peak = peak_rss_mib()

    flat_run = runs[0]
    flat_run.index_bytes_per_chunk = _serialized_bytes(flat) / n_chunks
    for kind, (index, _) in built.items():
        size = _serialized_bytes(index) / n_chunks
        for r in runs:
            if r.kind == kind:
                r.index_bytes_per_chunk = size
    auto_faiss = flat if auto_kind == "flat" else built[auto_kind][0] if auto_kind in built else flat
    auto_build = next((r.build_s for r in runs if r.kind == auto_kind), flat_build_s)
    index_build_s = bm25_build_s + auto_build
    bytes_per_chunk, measured = _index_bytes(
        SearchIndex.create(manifest, by_id, chunks, auto_faiss, bm25), n_chunks, save_max, bytes_hint)
    projected = (n_chunks / embed_chunks_per_s + index_build_s) if embed_chunks_per_s else None
    records = _write_records(text, dim)
    write_times = _bench_writes(SearchIndex.create(manifest, by_id, chunks, auto_faiss, bm25), records, settings)
    say(f"  {n_chunks} chunks: write p50 {np.median(write_times):.2f} ms")
    result = ScaleResult(
        chunks=n_chunks, articles=len(articles), synthetic=SYNTHETIC_DESCRIPTION, generate_s=generate_s,
        bm25_build_s=bm25_build_s, bm25_p50_ms=float(np.median(bm_times)),
        bm25_p95_ms=float(np.percentile(bm_times, 95)), bm25_exhaustive_p50_ms=float(np.median(score_times)),
        index_build_s=index_build_s,
        index_chunks_per_s=n_chunks / index_build_s, projected_build_s_real_embedder=projected,
        auto_kind=auto_kind, dense=runs, bytes_per_chunk=bytes_per_chunk, bytes_measured=measured,
        peak_rss_mib=peak, write_p50_ms=float(np.median(write_times)),
        write_p95_ms=float(np.percentile(write_times, 95)),
    )
    if "local" in stores:
        auto_hybrid = hybrid_times.get(auto_kind, hyb)
        disk = (bytes_per_chunk["index_total"] + bytes_per_chunk["articles"]
                if {"index_total", "articles"} <= bytes_per_chunk.keys() else None)
        result.stores.append(local_run(n_chunks, index_build_s, auto_hybrid, write_times, disk))
    milvus = [k for k in stores if k in MILVUS_KINDS]
    if milvus and n_chunks > milvus_max:
        say(f"  {n_chunks} chunks: Milvus skipped (above --milvus-max {milvus_max})")
        milvus = []
    if milvus:
        del flat, built, auto_faiss, bm25, flat_index
        gc.collect()
        vectors = mixture_vectors(n_chunks, dim, seed=2)  # the corpus's vectors again (freed above)
        for kind in milvus:
            result.stores.append(bench_milvus(kind, settings, manifest, articles, chunks, vectors, questions, qvecs,
                                              records, _VectorsOnly(dim), say))
    return result


def _write_records(text: ZipfText, dim: int) -> list[PutRecord]:
    """``WRITE_SAMPLES`` new articles of ``CHUNKS_PER_ARTICLE`` chunks with their vectors, the writes
    every store is timed on."""
    articles, _ = synthetic_corpus(text, WRITE_SAMPLES * CHUNKS_PER_ARTICLE, seed=9)
    return write_records(articles, mixture_vectors(WRITE_SAMPLES * CHUNKS_PER_ARTICLE, dim, seed=10))


def _bench_writes(index: SearchIndex, records: Sequence[PutRecord], settings: Settings) -> list[float]:
    """Milliseconds per ``LocalStore.write`` of each record in turn (the last last: it changes ``index``)."""
    from qa.store.local import LocalStore

    times = []
    with tempfile.TemporaryDirectory(prefix="qa-bench-journal-") as tmp:
        index.path = Path(tmp)  # the journal goes there; nothing else is saved
        store = LocalStore(settings.model_copy(update={"index_dir": Path(tmp)}))
        for record in records:
            t = time.perf_counter()
            index = store.write(index, record)
            times.append((time.perf_counter() - t) * 1000.0)
    return times


def _serialized_bytes(index: Any) -> int:
    import faiss

    return int(faiss.serialize_index(index).nbytes)


def ivf_nlist(n_chunks: int) -> int:
    """Inverted lists for an IVF index of ``n_chunks``: about sqrt(n), each with enough vectors to train."""
    return max(1, min(n_chunks // IVF_TRAIN_PER_LIST, round(math.sqrt(n_chunks))))


def _search_param(index: Any, kind: str) -> int:
    import faiss

    if kind == "hnsw":
        hnsw: Any = faiss.downcast_index(index)
        return int(hnsw.hnsw.efSearch)
    return int(faiss.extract_index_ivf(index).nprobe)


def _set_search_param(index: Any, kind: str, value: int) -> None:
    import faiss

    if kind == "hnsw":
        hnsw: Any = faiss.downcast_index(index)
        hnsw.hnsw.efSearch = value
    else:
        faiss.extract_index_ivf(index).nprobe = value


def _param_label(index: Any, kind: str, value: int) -> str:
    import faiss

    if kind == "hnsw":
        h: Any = faiss.downcast_index(index)
        return f"M={h.hnsw.nb_neighbors(1)} efC={h.hnsw.efConstruction} ef={value}"
    return f"nlist={faiss.extract_index_ivf(index).nlist} nprobe={value}"


def _index_bytes(index: SearchIndex, n_chunks: int, save_max: int,
                 hint: dict[str, float] | None) -> tuple[dict[str, float], bool]:
    """Bytes per chunk of each saved file group: measured up to ``save_max`` chunks (or when saving
    fails, e.g. for disk space), else ``hint``, the per-chunk figures of a smaller size."""
    if n_chunks <= save_max:
        try:
            with tempfile.TemporaryDirectory(prefix="qa-bench-index-") as tmp:
                sizes = _file_bytes(save_index(index, Path(tmp)))
            per = {k: v / n_chunks for k, v in sizes.items()}
            per["index_total"] = per["vectors"] + per["chunk_metadata"] + per["bm25"]
            return per, True
        except OSError:
            pass
    return (dict(hint) if hint else {}), False
