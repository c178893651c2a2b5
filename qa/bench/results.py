"""The figures ``qa bench`` reports, as dataclasses (``BenchReport.to_dict`` is the JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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
    # The CPU's instruction sets that decide the reader's runtime (qa.ort.cpu_has_native_bf16): with native
    # bf16 the reader runs torch bf16 autocast, without it ONNX Runtime fp32, about twice as slow here.
    native_bf16: bool = False
    simd: str = ""  # the widest vector extension the CPU reports (avx512f, avx2, ...)


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
class StoreRun:
    """One store filled with one synthetic corpus, measured through the store protocol as the
    product runs it: retrieval is ``Store.retriever(...).retrieve_batch`` on one question with its
    vector given (no embedding), a write is ``Store.write`` of one new article with its vectors."""

    store: str  # local, milvus-lite (embedded in the process) or milvus-server (`milvus-lite server`, loopback gRPC)
    chunks: int
    fill_s: float  # local: BM25 + the auto FAISS index; Milvus: inserts + sealing the segments (flush)
    fill_chunks_per_s: float
    queries: int
    retrieve_p50_ms: float
    retrieve_p95_ms: float
    writes: int
    write_p50_ms: float
    write_p95_ms: float
    # Milvus Lite: growth of this process's peak RSS while filling and searching (it runs in-process);
    # milvus-server: the server process's peak RSS; local: None (the scale table's peak RSS holds
    # every index kind at once, not the one the product loads).
    memory_mib: float | None = None
    disk_bytes_per_chunk: float | None = None  # local: index + articles; Milvus: its data folder after sealing
    # The first question after the store is filled and opened (Milvus loads the sealed segments'
    # indexes then); not among the timed ones. None for local (its index is already in memory).
    first_retrieve_ms: float | None = None


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
    bm25_exhaustive_p50_ms: float  # the same top k from every row's score
    index_build_s: float
    index_chunks_per_s: float
    projected_build_s_real_embedder: float | None
    auto_kind: str
    dense: list[DenseRun]
    bytes_per_chunk: dict[str, float]
    bytes_measured: bool
    peak_rss_mib: float
    # One API write into the auto index: journal record (fsynced) + FAISS add + BM25 add, for a
    # new article of CHUNKS_PER_ARTICLE chunks with its vectors given (embedding not included).
    write_p50_ms: float | None = None
    write_p95_ms: float | None = None
    # The same corpus in each store asked for (``--stores``), side by side.
    stores: list[StoreRun] = field(default_factory=list)


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
    precision: str = "fp32"  # the reader's runtime and arithmetic (onnx fp32, or torch in QA_READER_PRECISION)
    # The forward pass in each arithmetic (int8 is a what-if: the reader does not offer it).
    forward_fp32_ms_per_question: float | None = None
    forward_bf16_ms_per_question: float | None = None
    forward_int8_ms_per_question: float | None = None
    forward_onnx_ms_per_question: float | None = None  # ONNX Runtime, fp32 (None without onnxruntime)
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
