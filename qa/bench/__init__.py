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
    qa bench --skip seeds,build,reader --sizes 10000,100000 --stores local,milvus-lite,milvus-server
"""

from __future__ import annotations

from qa.bench.cli import BenchPlan, add_arguments, load_questions, plan_from_args, run
from qa.bench.config import (
    BATCH_SIZE,
    CHUNK_WORDS_MEAN,
    CHUNK_WORDS_SD,
    CHUNKS_PER_ARTICLE,
    COLD_RUNS,
    DEFAULT_REPEATS,
    DEFAULT_SIZES,
    EMBED_SAMPLE_CHUNKS,
    HNSW_EF_SWEEP,
    IVF_NPROBE_SWEEP,
    IVF_TRAIN_PER_LIST,
    MIX_NOISE,
    MIX_SECOND_TOPIC_MAX,
    MIX_SUBTOPIC_WEIGHT,
    MIX_SUBTOPICS,
    MIX_TOPICS,
    QUERY_WORDS,
    QUICK_EMBED_SAMPLE_CHUNKS,
    QUICK_QUESTIONS,
    QUICK_SIZES,
    RECALL_AT,
    SAVE_MAX_CHUNKS,
    SCALE_CHILD_TIMEOUT_S,
    SCALE_QUERIES,
    TARGET_READER_VS_FORWARD,
    TARGET_READER_VS_PIPELINE,
    TARGET_RECALL,
    TARGET_RETRIEVE_MS,
    WRITE_SAMPLES,
    ZIPF_EXPONENT,
    ZIPF_VOCAB,
    Say,
)
from qa.bench.measure import load_average, machine_info, median_latency, peak_rss_mib, percentiles, reset_peak_rss
from qa.bench.reader import bench_reader, hf_pipeline_baseline, profile_top, tokenize_like_reader
from qa.bench.report import check_targets, format_markdown
from qa.bench.results import (
    BenchReport,
    BuildResult,
    ColdStart,
    DenseRun,
    Latency,
    Machine,
    ReaderResult,
    ScaleResult,
    SeedsResult,
    StoreRun,
    TargetCheck,
)
from qa.bench.scale import (
    SYNTHETIC_DESCRIPTION,
    ZipfText,
    bench_build,
    ivf_nlist,
    make_ivf,
    mixture_vectors,
    scale_one,
    synthetic_corpus,
    zipf_vocabulary,
)
from qa.bench.seeds import ask_command, bench_seeds, measure_cold_start, settings_env
from qa.bench.stores import bench_milvus, fill_milvus, milvus_missing, write_records

__all__ = [
    "BATCH_SIZE",
    "CHUNKS_PER_ARTICLE",
    "CHUNK_WORDS_MEAN",
    "CHUNK_WORDS_SD",
    "COLD_RUNS",
    "DEFAULT_REPEATS",
    "DEFAULT_SIZES",
    "EMBED_SAMPLE_CHUNKS",
    "HNSW_EF_SWEEP",
    "IVF_NPROBE_SWEEP",
    "IVF_TRAIN_PER_LIST",
    "MIX_NOISE",
    "MIX_SECOND_TOPIC_MAX",
    "MIX_SUBTOPICS",
    "MIX_SUBTOPIC_WEIGHT",
    "MIX_TOPICS",
    "QUERY_WORDS",
    "QUICK_EMBED_SAMPLE_CHUNKS",
    "QUICK_QUESTIONS",
    "QUICK_SIZES",
    "RECALL_AT",
    "SAVE_MAX_CHUNKS",
    "SCALE_CHILD_TIMEOUT_S",
    "SCALE_QUERIES",
    "SYNTHETIC_DESCRIPTION",
    "TARGET_READER_VS_FORWARD",
    "TARGET_READER_VS_PIPELINE",
    "TARGET_RECALL",
    "TARGET_RETRIEVE_MS",
    "WRITE_SAMPLES",
    "ZIPF_EXPONENT",
    "ZIPF_VOCAB",
    "BenchPlan",
    "BenchReport",
    "BuildResult",
    "ColdStart",
    "DenseRun",
    "Latency",
    "Machine",
    "ReaderResult",
    "Say",
    "ScaleResult",
    "SeedsResult",
    "StoreRun",
    "TargetCheck",
    "ZipfText",
    "add_arguments",
    "ask_command",
    "bench_build",
    "bench_milvus",
    "bench_reader",
    "bench_seeds",
    "check_targets",
    "fill_milvus",
    "format_markdown",
    "hf_pipeline_baseline",
    "ivf_nlist",
    "load_average",
    "load_questions",
    "machine_info",
    "make_ivf",
    "measure_cold_start",
    "median_latency",
    "milvus_missing",
    "mixture_vectors",
    "peak_rss_mib",
    "percentiles",
    "plan_from_args",
    "profile_top",
    "reset_peak_rss",
    "run",
    "scale_one",
    "settings_env",
    "synthetic_corpus",
    "tokenize_like_reader",
    "write_records",
    "zipf_vocabulary",
]
