"""Benchmark edge (``qa bench``): latency, throughput, memory and scale on this machine.

Three parts, written as one JSON report (plus a markdown table):

1. Seeds, in process, warm: per-question ``ask`` latency by stage, batched throughput, and the
   cold start of the ``ask`` command.
2. Index scale: real-embedder throughput on a text sample, then synthetic corpora (clustered
   vectors, Zipf text) at each size, each in its own process so that its peak RSS is its own:
   flat vs approximate FAISS indexes, BM25, fused retrieval, recall and bytes per chunk.
3. Reader: our reader against the Hugging Face question-answering pipeline's algorithm and
   against the bare forward pass of the same model on the same windows.

Example::

    qa bench --quick
    qa bench --sizes 10000,100000,1000000 --repeats 5 --out bench/results.json
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import hashlib
import io
import json
import math
import os
import platform
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qa.embed import Embedder, SentenceTransformerEmbedder
from qa.index import (
    Manifest,
    SearchIndex,
    bm25_tokens,
    faiss_index_kind,
    make_bm25,
    make_faiss_index,
    save_index,
)
from qa.pipeline import QAPipeline
from qa.read import Reader, make_reader, reader_model_available, resolve_reader_kind
from qa.retrieve import HybridRetriever
from qa.settings import Settings
from qa.types import Article, Chunk, Hit

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (2_000,)
DEFAULT_REPEATS = 5
BATCH_SIZE = 16
COLD_RUNS = 3
# Questions per size for retrieval latency and recall (single-question searches, as ``ask`` does).
SCALE_QUERIES = 200
QUICK_QUESTIONS = 4
EMBED_SAMPLE_CHUNKS = 2_000
QUICK_EMBED_SAMPLE_CHUNKS = 64
RECALL_AT = 10
# Approximate-index search parameters swept at every size (the product's own value is marked).
HNSW_EF_SWEEP = (64, 128, 256, 512, 1024)
IVF_NPROBE_SWEEP = (8, 16, 32, 64)
# k-means sample per inverted list (faiss warns below 39).
IVF_TRAIN_PER_LIST = 40
# Sizes whose saved index is measured on disk; above this, bytes per chunk are extrapolated.
SAVE_MAX_CHUNKS = 1_000_000
SCALE_CHILD_TIMEOUT_S = 3600

# Targets of the issue "Benchmarks: speed, memory and scale".
TARGET_RETRIEVE_MS = 20.0
TARGET_RECALL = 0.95
TARGET_READER_VS_PIPELINE = 0.8
TARGET_READER_VS_FORWARD = 1.3

# Synthetic corpus shape. Vectors: a two-level Gaussian mixture on the unit sphere (topics and
# sub-topics, plus a second topic mixed in at a random weight so clusters overlap as real article
# topics do); uniform random vectors would have no neighbours for any index to find.
MIX_TOPICS = 1024
MIX_SUBTOPICS = 32
MIX_SUBTOPIC_WEIGHT = 0.7
MIX_SECOND_TOPIC_MAX = 0.8
MIX_NOISE = 1.0
# Text: words drawn from a Zipf law over a vocabulary (the seeds' words by frequency, then
# made-up words), chunk lengths like the product's 160-token chunks.
ZIPF_VOCAB = 50_000
ZIPF_EXPONENT = 1.07
CHUNK_WORDS_MEAN = 110
CHUNK_WORDS_SD = 15
CHUNKS_PER_ARTICLE = 8
QUERY_WORDS = 7

Say = Callable[[str], None]


# ================================================================ results


@dataclass
class Machine:
    """Where and when the figures were taken."""

    cpu: str
    cores: int
    ram_gib: float
    python: str
    torch: str
    faiss: str
    date: str
    git_commit: str
    git_dirty: bool
    # Runnable processes (1-minute load average) when the run started; above the core count, other
    # work was competing for the CPU and absolute times are inflated (ratios less so).
    load_average: float


@dataclass
class Latency:
    """Percentiles in milliseconds (medians over repeats when there were several)."""

    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass
class ColdStart:
    """``ask --json`` in a fresh process with the index present (seconds, median of runs)."""

    runs: int
    command_s: float
    import_s: float
    load_s: float
    first_answer_s: float


@dataclass
class SeedsResult:
    """Warm, in-process figures on the seed corpus."""

    articles: int
    chunks: int
    questions: int
    repeats: int
    reader: str
    total: Latency
    embed: Latency
    retrieve: Latency
    read: Latency
    assemble: Latency
    sequential_questions_per_s: float
    batch_size: int
    batched_questions_per_s: float
    cold_start: ColdStart | None


@dataclass
class BuildResult:
    """Index build with the real embedder (embedding dominates)."""

    label: str
    chunks: int
    seconds: float
    chunks_per_s: float
    peak_rss_mib: float
    rss_growth_mib: float


@dataclass
class DenseRun:
    """One FAISS index at one search setting."""

    kind: str
    params: str
    build_s: float
    dense_p50_ms: float
    dense_p95_ms: float
    recall_at_10: float
    hybrid_p50_ms: float | None = None
    hybrid_p95_ms: float | None = None
    role: str = ""  # "product": the product's own setting; fused latency is measured on the marked row
    index_bytes_per_chunk: float | None = None


@dataclass
class ScaleResult:
    """One synthetic corpus size."""

    chunks: int
    articles: int
    synthetic: str
    generate_s: float
    bm25_build_s: float
    bm25_p50_ms: float
    bm25_p95_ms: float
    bm25_scoring_p50_ms: float
    index_build_s: float
    index_chunks_per_s: float
    projected_build_s_real_embedder: float | None
    auto_kind: str
    dense: list[DenseRun]
    bytes_per_chunk: dict[str, float]
    bytes_measured: bool
    peak_rss_mib: float


@dataclass
class ReaderResult:
    """Our reader vs the Hugging Face QA pipeline algorithm vs the bare forward pass."""

    model: str
    questions: int
    passages: int
    windows: int
    repeats: int
    ours_ms_per_question: float
    pipeline_ms_per_question: float
    pipeline_impl: str
    forward_ms_per_question: float
    tokenize_ms_per_question: float
    # What our reader spends beyond tokenizing and the forward pass: span search, offsets, context windows.
    other_ms_per_question: float
    ratio_vs_pipeline: float
    ratio_vs_forward: float
    # Cheaper forward passes of the same weights (what-ifs for the reader, not what it does today).
    forward_bf16_ms_per_question: float | None = None
    forward_int8_ms_per_question: float | None = None
    bf16_argmax_agreement: float | None = None
    int8_argmax_agreement: float | None = None
    profile_top: list[str] = field(default_factory=list)


@dataclass
class TargetCheck:
    name: str
    value: float | None
    target: str
    met: bool | None


@dataclass
class BenchReport:
    machine: Machine
    quick: bool
    settings: dict[str, object]
    seeds: SeedsResult | None
    builds: list[BuildResult]
    embed_chunks_per_s: float | None
    scale: list[ScaleResult]
    reader: ReaderResult | None
    targets: list[TargetCheck]
    notes: list[str]

    def to_dict(self) -> dict[str, object]:
        return _rounded(asdict(self))


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4) if abs(value) < 10 else round(value, 2)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


# ================================================================ measuring helpers


def percentiles(values_ms: Sequence[float]) -> Latency:
    """p50/p95/p99 of ``values_ms`` (numpy's linear interpolation)."""
    if not values_ms:
        raise ValueError("percentiles of no values")
    p50, p95, p99 = np.percentile(np.asarray(values_ms, dtype=np.float64), [50, 95, 99]).tolist()
    return Latency(p50, p95, p99)


def median_latency(runs: Sequence[Latency]) -> Latency:
    """Each percentile's median over repeats."""
    return Latency(
        float(np.median([r.p50_ms for r in runs])),
        float(np.median([r.p95_ms for r in runs])),
        float(np.median([r.p99_ms for r in runs])),
    )


def _status_kib(key: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; returns that RSS in MiB."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS") / 1024.0


def peak_rss_mib() -> float:
    """Peak RSS since the last reset (VmHWM), or ru_maxrss where /proc is unavailable."""
    hwm = _status_kib("VmHWM")
    if hwm:
        return hwm / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_average() -> float:
    """The 1-minute load average (0.0 where unknown)."""
    try:
        return float(os.getloadavg()[0])
    except OSError:
        return 0.0


def machine_info() -> Machine:
    """CPU model, cores, RAM, library versions, date and git commit."""
    cpu = platform.processor() or platform.machine()
    ram = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = float(line.split()[1]) / 1024**2
    root = Path(__file__).resolve().parents[1]
    commit, dirty = "unknown", False
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True,
                                    text=True, timeout=10, check=True).stdout.strip())
    import faiss
    import torch

    return Machine(cpu=cpu, cores=os.cpu_count() or 0, ram_gib=ram, python=platform.python_version(),
                   torch=torch.__version__, faiss=faiss.__version__,
                   date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), git_commit=commit, git_dirty=dirty,
                   load_average=load_average())


# ================================================================ 1. seeds


def bench_seeds(pipeline: QAPipeline, questions: Sequence[str], repeats: int, say: Say) -> SeedsResult:
    """Per-question ``ask`` latency by stage and batched throughput over ``questions``."""
    index = pipeline.index
    if index is None:
        raise RuntimeError("pipeline not loaded; call load() first")
    for q in questions[:3]:  # warm-up: first calls allocate and fill caches
        pipeline.ask(q)
    stages = ("embed", "retrieve", "read", "assemble")
    per_repeat: dict[str, list[Latency]] = {s: [] for s in ("total", *stages)}
    seq_qps, batch_qps = [], []
    for r in range(repeats):
        pipeline.set_index(index)  # a fresh retriever: the question-vector cache starts empty
        rows: dict[str, list[float]] = {s: [] for s in ("total", *stages)}
        t0 = time.perf_counter()
        for q in questions:
            t = time.perf_counter()
            a = pipeline.ask(q)
            rows["total"].append((time.perf_counter() - t) * 1000.0)
            for s in stages:
                rows[s].append(a.timings.get(s, 0.0))
        seq_qps.append(len(questions) / (time.perf_counter() - t0))
        for s, vals in rows.items():
            per_repeat[s].append(percentiles(vals))
        pipeline.set_index(index)
        t0 = time.perf_counter()
        for i in range(0, len(questions), BATCH_SIZE):
            pipeline.ask_batch(list(questions[i : i + BATCH_SIZE]))
        batch_qps.append(len(questions) / (time.perf_counter() - t0))
        say(f"  seeds repeat {r + 1}/{repeats}: p50 {per_repeat['total'][-1].p50_ms:.1f} ms, "
            f"batched {batch_qps[-1]:.1f} q/s")
    med = {s: median_latency(v) for s, v in per_repeat.items()}
    return SeedsResult(
        articles=len(index.articles), chunks=index.n_chunks, questions=len(questions), repeats=repeats,
        reader=getattr(pipeline.reader, "name", type(pipeline.reader).__name__),
        total=med["total"], embed=med["embed"], retrieve=med["retrieve"], read=med["read"],
        assemble=med["assemble"], sequential_questions_per_s=float(np.median(seq_qps)), batch_size=BATCH_SIZE,
        batched_questions_per_s=float(np.median(batch_qps)), cold_start=None,
    )


# The probe runs in a fresh interpreter: times the imports, the model and index load, and the first answer.
_COLD_PROBE = """
import json, sys, time
t0 = time.perf_counter()
from qa.cli import _quiet_libraries
from qa.pipeline import QAPipeline
from qa.settings import Settings
_quiet_libraries()
t1 = time.perf_counter()
p = QAPipeline(Settings())
p.load(rebuild=False)
t2 = time.perf_counter()
p.ask(sys.argv[1])
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_answer_s": t3 - t2}))
"""


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process use ``settings`` (paths made absolute)."""
    env = dict(os.environ)
    env.update({
        "QA_INDEX_DIR": str(Path(settings.index_dir).resolve()),
        "QA_CORPUS_DIR": str(Path(settings.corpus_dir).resolve()),
        "QA_EMBED_MODEL": settings.embed_model,
        "QA_READER": settings.reader,
        "QA_READER_MODEL": settings.reader_model,
        "QA_TOP_K": str(settings.top_k),
    })
    return env


def ask_command() -> list[str]:
    """The installed ``ask`` entry point next to this interpreter."""
    exe = Path(sys.executable).parent / "ask"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from qa.cli import ask_main; sys.exit(ask_main())"]


def measure_cold_start(command: Sequence[str], probe: Sequence[str], question: str, env: dict[str, str],
                       runs: int) -> ColdStart:
    """Median wall time of ``command --json question`` and the probe's split of one start."""
    walls, probes = [], []
    for _ in range(runs):
        t = time.perf_counter()
        done = subprocess.run([*command, "--json", question], env=env, capture_output=True, text=True,
                              timeout=600)
        walls.append(time.perf_counter() - t)
        if done.returncode != 0:
            raise RuntimeError(f"cold start: {' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")
        done = subprocess.run([*probe, question], env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"cold-start probe exited {done.returncode}: {done.stderr.strip()[-500:]}")
        probes.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return ColdStart(runs=runs, command_s=float(np.median(walls)),
                     import_s=float(np.median([p["import_s"] for p in probes])),
                     load_s=float(np.median([p["load_s"] for p in probes])),
                     first_answer_s=float(np.median([p["first_answer_s"] for p in probes])))


# ================================================================ 2. synthetic corpora


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
              embed_chunks_per_s: float | None, say: Say, bytes_hint: dict[str, float] | None = None) -> ScaleResult:
    """Every measurement at one synthetic corpus size (run it in a fresh process for its peak RSS)."""
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
    tokens = [bm25_tokens(q) or ["\x00empty"] for q in questions]
    ck = min(settings.candidates_k, n_chunks)
    bm_times: list[float] = []
    score_times: list[float] = []
    for tok in tokens:
        t = time.perf_counter()
        bm25.retrieve([tok], k=ck, show_progress=False, n_threads=1)
        bm_times.append((time.perf_counter() - t) * 1000.0)
        t = time.perf_counter()
        bm25.get_scores(tok)  # scoring alone; the rest of retrieve() is top-k selection over every chunk
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
    flat_index = SearchIndex(manifest, by_id, chunks, flat, bm25)
    hyb = _hybrid_run(flat_index, questions, qvecs, settings)
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
        h = _hybrid_run(SearchIndex(manifest, by_id, chunks, index, bm25), questions, qvecs, settings)
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
        SearchIndex(manifest, by_id, chunks, auto_faiss, bm25), n_chunks, save_max, bytes_hint)
    projected = (n_chunks / embed_chunks_per_s + index_build_s) if embed_chunks_per_s else None
    return ScaleResult(
        chunks=n_chunks, articles=len(articles), synthetic=SYNTHETIC_DESCRIPTION, generate_s=generate_s,
        bm25_build_s=bm25_build_s, bm25_p50_ms=float(np.median(bm_times)),
        bm25_p95_ms=float(np.percentile(bm_times, 95)), bm25_scoring_p50_ms=float(np.median(score_times)),
        index_build_s=index_build_s,
        index_chunks_per_s=n_chunks / index_build_s, projected_build_s_real_embedder=projected,
        auto_kind=auto_kind, dense=runs, bytes_per_chunk=bytes_per_chunk, bytes_measured=measured,
        peak_rss_mib=peak,
    )


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


# ================================================================ 3. reader


def tokenize_like_reader(tokenizer: Any, settings: Settings, question: str, hits: Sequence[Hit]) -> dict[str, Any]:
    """The windows our reader builds for one question (same truncation, stride and padding)."""
    enc = tokenizer([question] * len(hits), [h.chunk.text for h in hits], truncation="only_second",
                    max_length=settings.reader_max_length, stride=settings.reader_stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True, padding="longest",
                    return_tensors="pt")
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}


def hf_pipeline_baseline(model: Any, tokenizer: Any, settings: Settings) -> tuple[Callable[[str, Sequence[Hit]], Any],
                                                                                  str]:
    """What a user would write: ``pipeline("question-answering")`` over the passages, one call per
    question. transformers 5 removed that task; then its algorithm (v4.x QuestionAnsweringPipeline,
    batch_size 1: one forward per window, softmax start x end outer product per window) stands in."""
    kwargs = dict(max_seq_len=settings.reader_max_length, doc_stride=settings.reader_stride,
                  max_answer_len=settings.max_answer_tokens, handle_impossible_answer=True, top_k=1)
    try:
        import transformers

        hf_pipeline: Any = transformers.pipeline
        qa = hf_pipeline("question-answering", model=model, tokenizer=tokenizer, device=-1)

        def run_hf(question: str, hits: Sequence[Hit]) -> Any:
            return qa(question=[question] * len(hits), context=[h.chunk.text for h in hits], **kwargs)

        return run_hf, "transformers.pipeline('question-answering')"
    except (KeyError, ValueError, ImportError):
        pass
    import torch

    def run_v4(question: str, hits: Sequence[Hit]) -> Any:
        answers = []
        for h in hits:
            enc = tokenizer(question, h.chunk.text, truncation="only_second", max_length=settings.reader_max_length,
                            stride=settings.reader_stride, return_overflowing_tokens=True,
                            return_offsets_mapping=True, padding="longest")
            best: tuple[float, int, int] = (-1.0, 0, 0)
            min_null = 1.0
            for f in range(len(enc["input_ids"])):
                feats = {k: torch.tensor([enc[k][f]]) for k in ("input_ids", "attention_mask", "token_type_ids")
                         if k in enc}
                with torch.no_grad():
                    out = model(**feats)
                seq = enc.sequence_ids(f)
                undesired = np.array([s != 1 for s in seq])
                undesired[0] = False
                start = np.where(undesired, -10000.0, out.start_logits[0].numpy())
                end = np.where(undesired, -10000.0, out.end_logits[0].numpy())
                start = np.exp(start - start.max())
                start /= start.sum()
                end = np.exp(end - end.max())
                end /= end.sum()
                min_null = min(min_null, float(start[0] * end[0]))
                start[0] = end[0] = 0.0
                outer = np.matmul(start[:, None], end[None, :])
                cand = np.tril(np.triu(outer), settings.max_answer_tokens - 1)
                flat = cand.flatten()
                i = int(np.argmax(flat))
                s, e = np.unravel_index(i, cand.shape)
                if flat[i] > best[0]:
                    offs = enc["offset_mapping"][f]
                    best = (float(flat[i]), offs[s][0], offs[e][1])
            answers.append({"score": best[0], "start": best[1], "end": best[2],
                            "answer": h.chunk.text[best[1] : best[2]], "null": min_null})
        return answers

    return run_v4, "transformers 4.x QuestionAnsweringPipeline algorithm (the task is gone from transformers 5)"


def bench_reader(reader: Reader, settings: Settings, questions: Sequence[str], hits: Sequence[list[Hit]],
                 repeats: int, say: Say) -> ReaderResult:
    """Our reader vs the HF QA pipeline vs the bare forward pass, interleaved in each repeat.

    Two cheaper forward passes of the same weights are timed beside them (bfloat16 autocast, int8
    dynamic quantisation of the Linear layers), with how often their best start/end token agrees.
    """
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(settings.reader_model)
    model = AutoModelForQuestionAnswering.from_pretrained(settings.reader_model).float().eval()
    baseline, impl = hf_pipeline_baseline(model, tokenizer, settings)
    pairs = [(q, h) for q, h in zip(questions, hits, strict=True) if h]
    windows = [tokenize_like_reader(tokenizer, settings, q, h) for q, h in pairs]
    n_windows = sum(int(w["input_ids"].shape[0]) for w in windows)
    int8 = _int8_model(model)

    def forward_with(m: Any, bf16: bool = False) -> Callable[[], None]:
        def run_all() -> None:
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with torch.inference_mode(), ctx:
                for w in windows:
                    m(**w)

        return run_all

    def ours() -> None:
        for q, h in pairs:
            reader.read_batch([q], [h])

    def pipe() -> None:
        for q, h in pairs:
            baseline(q, h)

    def tokenize() -> None:
        for q, h in pairs:
            tokenize_like_reader(tokenizer, settings, q, h)

    timed: dict[str, Callable[[], None]] = {"ours": ours, "pipe": pipe, "fwd": forward_with(model),
                                            "tok": tokenize, "bf16": forward_with(model, bf16=True)}
    if int8 is not None:
        timed["int8"] = forward_with(int8)
    for warm_up in timed.values():
        warm_up()
    times: dict[str, list[float]] = {name: [] for name in timed}
    r_pipe, r_fwd = [], []
    for r in range(repeats):
        for name, fn in timed.items():
            t = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t) * 1000.0 / len(pairs))
        r_pipe.append(times["ours"][-1] / times["pipe"][-1])
        r_fwd.append(times["ours"][-1] / times["fwd"][-1])
        say(f"  reader repeat {r + 1}/{repeats}: ours {times['ours'][-1]:.1f} ms/q, pipeline "
            f"{times['pipe'][-1]:.1f}, forward {times['fwd'][-1]:.1f}, bf16 {times['bf16'][-1]:.1f}")
    med = {name: float(np.median(v)) for name, v in times.items()}
    other = [o - f - k for o, f, k in zip(times["ours"], times["fwd"], times["tok"], strict=True)]
    return ReaderResult(
        model=settings.reader_model, questions=len(pairs), passages=sum(len(h) for _, h in pairs),
        windows=n_windows, repeats=repeats, ours_ms_per_question=med["ours"],
        pipeline_ms_per_question=med["pipe"], pipeline_impl=impl, forward_ms_per_question=med["fwd"],
        tokenize_ms_per_question=med["tok"], other_ms_per_question=float(np.median(other)),
        ratio_vs_pipeline=float(np.median(r_pipe)), ratio_vs_forward=float(np.median(r_fwd)),
        forward_bf16_ms_per_question=med["bf16"], forward_int8_ms_per_question=med.get("int8"),
        bf16_argmax_agreement=_argmax_agreement(model, model, windows, bf16=True),
        int8_argmax_agreement=_argmax_agreement(model, int8, windows) if int8 is not None else None,
        profile_top=profile_top(ours),
    )


def _int8_model(model: Any) -> Any:
    """``model`` with int8 dynamic quantisation of its Linear layers, or None where unsupported."""
    import copy

    import torch

    try:
        with warnings.catch_warnings():  # deprecated in favour of torchao, which is not a dependency
            warnings.simplefilter("ignore")
            from torch.ao.quantization import quantize_dynamic

            return quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    except (ImportError, RuntimeError, AssertionError):
        return None


def _argmax_agreement(ref: Any, other: Any, windows: Sequence[dict[str, Any]], bf16: bool = False) -> float:
    """Share of windows where ``other`` picks the same best start and end token as ``ref`` (fp32)."""
    import torch

    same = total = 0
    with torch.inference_mode():
        for w in windows:
            a = ref(**w)
            with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
                b = other(**w)
            mask = w["attention_mask"].bool()
            for logits_a, logits_b in ((a.start_logits, b.start_logits), (a.end_logits, b.end_logits)):
                ia = logits_a.float().masked_fill(~mask, -1e9).argmax(dim=1)
                ib = logits_b.float().masked_fill(~mask, -1e9).argmax(dim=1)
                same += int((ia == ib).sum())
                total += int(ia.numel())
    return same / max(total, 1)


def profile_top(fn: Callable[[], object], n: int = 12) -> list[str]:
    """The ``n`` functions with the most own time under cProfile, as one line each."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof, stream=io.StringIO())
    total = max(stats.total_tt, 1e-9)  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:n]  # type: ignore[attr-defined]
    out = []
    for (file, line, func), (_, ncalls, tottime, cumtime, _) in rows:
        where = f"{Path(file).name}:{line}" if line else file
        out.append(f"{100 * tottime / total:5.1f}% own {tottime * 1000:8.1f} ms, cum {cumtime * 1000:8.1f} ms, "
                   f"{ncalls:>7} calls  {func} ({where})")
    return out


# ================================================================ targets, tables


def check_targets(report: BenchReport) -> list[TargetCheck]:
    """Each target of the issue with the measured value and whether it is met."""
    checks: list[TargetCheck] = []
    largest = max(report.scale, key=lambda s: s.chunks, default=None)
    if largest is not None:
        auto = next((d for d in largest.dense if d.kind == largest.auto_kind and d.hybrid_p50_ms is not None), None)
        if auto is not None:
            checks.append(TargetCheck(f"dense retrieval p50 at {largest.chunks} chunks ({auto.kind})",
                                      auto.dense_p50_ms, f"< {TARGET_RETRIEVE_MS} ms",
                                      auto.dense_p50_ms < TARGET_RETRIEVE_MS))
            if auto.hybrid_p50_ms is not None:
                checks.append(TargetCheck(f"dense+BM25 retrieval p50 at {largest.chunks} chunks ({auto.kind})",
                                          auto.hybrid_p50_ms, f"< {TARGET_RETRIEVE_MS} ms",
                                          auto.hybrid_p50_ms < TARGET_RETRIEVE_MS))
            checks.append(TargetCheck(f"recall@10 vs flat at {largest.chunks} chunks ({auto.kind})",
                                      auto.recall_at_10, f">= {TARGET_RECALL}", auto.recall_at_10 >= TARGET_RECALL))
    if report.reader is not None:
        r = report.reader
        checks.append(TargetCheck("reader time / HF QA pipeline", r.ratio_vs_pipeline,
                                  f"<= {TARGET_READER_VS_PIPELINE}", r.ratio_vs_pipeline <= TARGET_READER_VS_PIPELINE))
        checks.append(TargetCheck("reader time / bare forward pass", r.ratio_vs_forward,
                                  f"<= {TARGET_READER_VS_FORWARD}", r.ratio_vs_forward <= TARGET_READER_VS_FORWARD))
    return checks


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * x


def _f(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def format_markdown(report: BenchReport) -> str:
    """The report as markdown tables (also printed by ``qa bench``)."""
    m = report.machine
    lines = [f"# qa bench{' (quick)' if report.quick else ''}", "",
             f"{m.cpu}, {m.cores} cores, {m.ram_gib:.1f} GiB RAM; Python {m.python}, torch {m.torch}, "
             f"faiss {m.faiss}; {m.date}; commit {m.git_commit[:12]}{' (dirty)' if m.git_dirty else ''}; "
             f"load average {m.load_average:.2f} at start", ""]
    s = report.seeds
    if s is not None:
        lines += [f"## Seed corpus ({s.articles} articles, {s.chunks} chunks), warm, reader {s.reader}", "",
                  f"{s.questions} questions x {s.repeats} repeats (medians over repeats)", "",
                  "| stage | p50 ms | p95 ms | p99 ms |", "|---|---:|---:|---:|"]
        for name in ("total", "embed", "retrieve", "read", "assemble"):
            lat: Latency = getattr(s, name)
            lines.append(f"| {name} | {_f(lat.p50_ms)} | {_f(lat.p95_ms)} | {_f(lat.p99_ms)} |")
        lines += ["", f"Sequential: {s.sequential_questions_per_s:.2f} questions/s; batched "
                      f"(ask_batch of {s.batch_size}): {s.batched_questions_per_s:.2f} questions/s."]
        if s.cold_start is not None:
            c = s.cold_start
            lines.append(f"Cold start `ask --json` (median of {c.runs}): {c.command_s:.2f} s; inside a fresh "
                         f"process: imports {c.import_s:.2f} s, models + index load {c.load_s:.2f} s, "
                         f"first answer {c.first_answer_s:.2f} s.")
        lines.append("")
    if report.builds or report.embed_chunks_per_s:
        lines += ["## Index build with the real embedder", "",
                  "| corpus | chunks | seconds | chunks/s | peak RSS MiB | RSS growth MiB |",
                  "|---|---:|---:|---:|---:|---:|"]
        for b in report.builds:
            lines.append(f"| {b.label} | {b.chunks} | {_f(b.seconds, 2)} | {_f(b.chunks_per_s)} | "
                         f"{_f(b.peak_rss_mib, 0)} | {_f(b.rss_growth_mib, 0)} |")
        lines.append("")
    if report.scale:
        lines += ["## Synthetic corpora", "", f"Synthetic: {report.scale[0].synthetic}.", "",
                  "| chunks | index | params | build s | FAISS bytes/chunk | dense p50 ms | dense p95 ms | recall@10 | "
                  "dense+BM25 p50 ms | dense+BM25 p95 ms |",
                  "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for sc in report.scale:
            for d in sc.dense:
                mark = f" ({d.role})" if d.role else ""
                lines.append(f"| {sc.chunks:,} | {d.kind}{mark} | {d.params} | {_f(d.build_s, 2)} | "
                             f"{_f(d.index_bytes_per_chunk, 0)} | "
                             f"{_f(d.dense_p50_ms, 2)} | {_f(d.dense_p95_ms, 2)} | {d.recall_at_10:.3f} | "
                             f"{_f(d.hybrid_p50_ms, 2)} | {_f(d.hybrid_p95_ms, 2)} |")
        lines += ["", "| chunks | auto index | BM25 build s | BM25 p50 ms | (of which scoring) | BM25 p95 ms | "
                      "index build s "
                      "(BM25 + auto FAISS) | chunks/s | projected build s with real embedder | peak RSS MiB | "
                      "bytes/chunk: vectors | metadata | BM25 | index total | articles text |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for sc in report.scale:
            per = sc.bytes_per_chunk
            note = "" if sc.bytes_measured else " (extrapolated)"
            lines.append(
                f"| {sc.chunks:,} | {sc.auto_kind} | {_f(sc.bm25_build_s)} | {_f(sc.bm25_p50_ms, 2)} | "
                f"{_f(sc.bm25_scoring_p50_ms, 2)} | "
                f"{_f(sc.bm25_p95_ms, 2)} | {_f(sc.index_build_s)} | {_f(sc.index_chunks_per_s, 0)} | "
                f"{_f(sc.projected_build_s_real_embedder, 0)} | {_f(sc.peak_rss_mib, 0)} | "
                f"{_f(per.get('vectors'), 0)}{note} | {_f(per.get('chunk_metadata'), 0)} | "
                f"{_f(per.get('bm25'), 0)} | {_f(per.get('index_total'), 0)} | {_f(per.get('articles'), 0)} |")
        lines.append("")
    r = report.reader
    if r is not None:
        lines += [f"## Reader ({r.questions} questions, {r.passages} passages, {r.windows} windows, "
                  f"{r.repeats} repeats)", "",
                  "| | ms/question | ratio (ours / it) |", "|---|---:|---:|",
                  f"| ours (TransformersReader.read_batch per question) | {_f(r.ours_ms_per_question)} | 1.00 |",
                  f"| HF QA pipeline: {r.pipeline_impl} | {_f(r.pipeline_ms_per_question)} | "
                  f"{r.ratio_vs_pipeline:.2f} |",
                  f"| bare forward pass, same windows, inference_mode | {_f(r.forward_ms_per_question)} | "
                  f"{r.ratio_vs_forward:.2f} |",
                  f"| (tokenization alone, same windows) | {_f(r.tokenize_ms_per_question)} | |",
                  f"| (ours minus forward minus tokenization) | {_f(r.other_ms_per_question)} | |",
                  f"| what-if: forward pass under bfloat16 autocast (best start/end token agrees with fp32 on "
                  f"{_f(_pct(r.bf16_argmax_agreement))}% of windows x 2) | {_f(r.forward_bf16_ms_per_question)} | |",
                  f"| what-if: forward pass with int8 dynamic quantisation of Linear layers (agrees on "
                  f"{_f(_pct(r.int8_argmax_agreement))}%) | {_f(r.forward_int8_ms_per_question)} | |", "",
                  "cProfile of our reader (own time):", "", "```", *r.profile_top, "```", ""]
    if report.targets:
        lines += ["## Targets", "", "| target | value | goal | met |", "|---|---:|---|---|"]
        for t in report.targets:
            met = "-" if t.met is None else ("yes" if t.met else "**no**")
            lines.append(f"| {t.name} | {_f(t.value, 3)} | {t.target} | {met} |")
        lines.append("")
    if report.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in report.notes], ""]
    return "\n".join(lines)


# ================================================================ running


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``qa bench`` options."""
    parser.add_argument("--quick", action="store_true",
                        help=f"seconds, not minutes: {QUICK_SIZES[0]} chunks, 1 repeat, {QUICK_QUESTIONS} questions")
    parser.add_argument("--sizes", default=None,
                        help="synthetic corpus sizes in chunks, comma-separated (default 10000,100000,1000000)")
    parser.add_argument("--repeats", type=int, default=None, help=f"repeats (default {DEFAULT_REPEATS}; quick 1)")
    parser.add_argument("--out", type=Path, default=Path("bench/results.json"),
                        help="JSON report (a markdown table is written next to it as .md)")
    parser.add_argument("--testset", type=Path, default=Path("tests/data/qa_testset.jsonl"),
                        help="questions to ask (JSONL with a 'question' field)")
    parser.add_argument("--corpus", type=Path, default=None, help="seed corpus folder (default seeds/)")
    parser.add_argument("--ann", default="hnsw,ivf", help="approximate indexes to compare with flat (hnsw,ivf)")
    parser.add_argument("--cold-runs", type=int, default=None,
                        help=f"fresh `ask` processes to time (default {COLD_RUNS}; quick 1; 0 skips)")
    parser.add_argument("--queries", type=int, default=None,
                        help=f"questions per synthetic size (default {SCALE_QUERIES})")
    parser.add_argument("--save-max", type=int, default=SAVE_MAX_CHUNKS,
                        help="largest size whose index is saved to measure bytes per chunk")
    parser.add_argument("--skip", default="", help="parts to skip, comma-separated: seeds,build,scale,reader")


@dataclass(frozen=True)
class BenchPlan:
    quick: bool
    sizes: tuple[int, ...]
    repeats: int
    cold_runs: int
    queries: int
    question_limit: int | None
    embed_sample: int
    ann: tuple[str, ...]
    save_max: int
    skip: frozenset[str]


def plan_from_args(args: argparse.Namespace) -> BenchPlan:
    """Validated options, quick-mode defaults filled in."""
    quick = bool(args.quick)
    if args.sizes is not None:
        try:
            sizes = tuple(int(x) for x in str(args.sizes).split(",") if x.strip())
        except ValueError:
            raise ValueError(f"--sizes must be comma-separated integers, got {args.sizes!r}") from None
    else:
        sizes = QUICK_SIZES if quick else DEFAULT_SIZES
    sizes = tuple(sorted(set(sizes)))
    if any(n < RECALL_AT * 4 for n in sizes):
        raise ValueError(f"--sizes must each be >= {RECALL_AT * 4}, got {args.sizes}")
    repeats = args.repeats if args.repeats is not None else (1 if quick else DEFAULT_REPEATS)
    cold = args.cold_runs if args.cold_runs is not None else (1 if quick else COLD_RUNS)
    queries = args.queries if args.queries is not None else (QUICK_QUESTIONS * 5 if quick else SCALE_QUERIES)
    for name, value, low in (("repeats", repeats, 1), ("cold-runs", cold, 0), ("queries", queries, 1),
                             ("save-max", args.save_max, 0)):
        if value < low:
            raise ValueError(f"--{name} must be >= {low}, got {value}")
    ann = tuple(a.strip() for a in str(args.ann).split(",") if a.strip())
    bad = [a for a in ann if a not in ("hnsw", "ivf")]
    if bad:
        raise ValueError(f"--ann takes hnsw and/or ivf, got {bad[0]!r}")
    skip = frozenset(s.strip() for s in str(args.skip).split(",") if s.strip())
    unknown = skip - {"seeds", "build", "scale", "reader"}
    if unknown:
        raise ValueError(f"--skip takes seeds, build, scale, reader; got {sorted(unknown)[0]!r}")
    return BenchPlan(quick=quick, sizes=sizes, repeats=repeats, cold_runs=cold, queries=queries,
                     question_limit=QUICK_QUESTIONS if quick else None,
                     embed_sample=QUICK_EMBED_SAMPLE_CHUNKS if quick else EMBED_SAMPLE_CHUNKS, ann=ann,
                     save_max=args.save_max, skip=skip)


def load_questions(path: Path, limit: int | None) -> list[str]:
    """The ``question`` field of each JSONL line."""
    from qa.evaluate import load_testset

    return [g.question for g in load_testset(path)][:limit]


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


def _scale_in_child(n: int, settings: Settings, plan: BenchPlan, embed_rate: float | None, say: Say,
                    bytes_hint: dict[str, float] | None) -> ScaleResult:
    """Run :func:`scale_one` in a fresh interpreter (its own peak RSS), streaming its progress."""
    config = {"n": n, "ann": list(plan.ann), "queries": plan.queries, "save_max": plan.save_max,
              "embed_rate": embed_rate, "bytes_hint": bytes_hint, "settings": settings.model_dump(mode="json")}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
        cfg = f.name
    out_path = cfg + ".out"
    try:
        proc = subprocess.Popen([sys.executable, "-m", "qa.bench", "--scale-child", cfg, out_path],
                                stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        tail: list[str] = []
        for line in proc.stderr:
            line = line.rstrip()
            tail = [*tail[-20:], line]
            if line.startswith("  "):
                say(line)
        rc = proc.wait(timeout=SCALE_CHILD_TIMEOUT_S)
        if rc != 0:
            raise RuntimeError(f"scale benchmark at {n} chunks exited {rc}: " + " | ".join(tail[-5:]))
        data = json.loads(Path(out_path).read_text())
    finally:
        Path(cfg).unlink(missing_ok=True)
        Path(out_path).unlink(missing_ok=True)
    data["dense"] = [DenseRun(**d) for d in data["dense"]]
    return ScaleResult(**data)


def _scale_child_main(cfg_path: str, out_path: str) -> int:
    cfg = json.loads(Path(cfg_path).read_text())
    settings = Settings(**cfg["settings"])

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = scale_one(cfg["n"], settings, cfg["ann"], cfg["queries"], cfg["save_max"], cfg["embed_rate"], say,
                       cfg["bytes_hint"])
    Path(out_path).write_text(json.dumps(asdict(result)))
    return 0


@contextlib.contextmanager
def _seed_index_dir(settings: Settings) -> Iterator[Settings]:
    tmp = tempfile.mkdtemp(prefix="qa-bench-seeds-")
    try:
        yield settings.model_copy(update={"index_dir": Path(tmp)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, settings: Settings, say: Say, *, embedder: Embedder | None = None,
        reader: Reader | None = None, cold_command: Sequence[str] | None = None) -> int:
    """``qa bench``: measure, print the table, write JSON and markdown; returns 0.

    ``embedder`` and ``reader`` replace the configured models (tests pass fakes); ``cold_command``
    replaces the ``ask`` entry point timed for the cold start.
    """
    plan = plan_from_args(args)
    corpus = args.corpus if args.corpus is not None else settings.corpus_dir
    settings = settings.model_copy(update={"corpus_dir": Path(corpus)})
    questions = load_questions(args.testset, plan.question_limit)
    emb: Embedder = embedder if embedder is not None else SentenceTransformerEmbedder(
        settings.embed_model, settings.embed_batch_size)
    notes = [f"synthetic corpora: {SYNTHETIC_DESCRIPTION}",
             "scale sizes run in their own process: peak RSS includes the synthetic corpus being held in memory",
             "dense latencies are single-question searches (k = candidates_k) as `ask` does them; dense+BM25 is "
             "HybridRetriever.retrieve_batch on one question with its vector given (no embedding)"]
    say(f"qa bench{' --quick' if plan.quick else ''}: {len(questions)} questions, sizes {list(plan.sizes)}, "
        f"{plan.repeats} repeats")
    report = BenchReport(
        machine=machine_info(), quick=plan.quick,
        settings={"top_k": settings.top_k, "candidates_k": settings.candidates_k,
                  "hnsw_min_chunks": settings.hnsw_min_chunks, "reader_model": settings.reader_model,
                  "reader_max_length": settings.reader_max_length, "reader_stride": settings.reader_stride,
                  "embed_model": settings.embed_model, "torch_threads": _torch_threads()},
        seeds=None, builds=[], embed_chunks_per_s=None, scale=[], reader=None, targets=[], notes=notes)
    out = Path(args.out)

    def write() -> str:
        """Write what is measured so far, so that a crash late in a long run loses only the rest."""
        report.targets = check_targets(report)
        table = format_markdown(report)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        out.with_suffix(".md").write_text(table + "\n", encoding="utf-8")
        return table

    with _seed_index_dir(settings) as s_tmp:
        pipeline = QAPipeline(s_tmp, embedder=emb, reader=reader)
        if not {"seeds", "reader"} <= plan.skip:
            say(f"loading the pipeline over {corpus}/ (temporary index)")
            pipeline.load(corpus)
        if "seeds" not in plan.skip:
            say("1/4 seeds: warm latency and throughput")
            report.seeds = bench_seeds(pipeline, questions, plan.repeats, say)
            if plan.cold_runs:
                say(f"    cold start: {plan.cold_runs} fresh `ask` processes")
                kind = resolve_reader_kind(s_tmp)
                env = settings_env(s_tmp.model_copy(update={"reader": kind}))
                report.seeds.cold_start = measure_cold_start(
                    cold_command if cold_command is not None else ask_command(),
                    [sys.executable, "-c", _COLD_PROBE], questions[0], env, plan.cold_runs)
            write()
        if "reader" not in plan.skip and not reader_model_available(s_tmp.reader_model):
            notes.append(f"reader part skipped: no QA model at {s_tmp.reader_model} (set QA_READER_MODEL)")
        elif "reader" not in plan.skip:
            say("2/4 reader: ours vs HF pipeline vs forward pass")
            rdr = pipeline.reader
            if getattr(rdr, "name", None) != "transformers":
                rdr = make_reader(s_tmp, emb, "transformers")
                rdr.load()
            hits = [pipeline.search(q) for q in questions]
            report.reader = bench_reader(rdr, s_tmp, questions, hits, plan.repeats, say)
            write()
        del pipeline
        gc.collect()
    if "build" not in plan.skip:
        say("3/4 index build with the real embedder")
        report.builds, report.embed_chunks_per_s = bench_build(emb, settings, Path(corpus), plan.embed_sample)
        write()
    if "scale" not in plan.skip:
        for n in plan.sizes:
            say(f"4/4 scale: {n:,} synthetic chunks")
            hint = next((sc.bytes_per_chunk for sc in reversed(report.scale) if sc.bytes_measured), None)
            try:
                report.scale.append(_scale_in_child(n, settings, plan, report.embed_chunks_per_s, say, hint))
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                notes.append(f"scale {n} failed: {e}")
                say(f"warning: {e}")
            write()
    notes.append(f"1-minute load average at the end: {load_average():.2f} (start: {report.machine.load_average:.2f})")
    print(write())
    say(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--scale-child":
    sys.exit(_scale_child_main(sys.argv[2], sys.argv[3]))
