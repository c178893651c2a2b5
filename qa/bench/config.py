"""Tunables of ``qa bench``: sizes, repeats, sweeps, targets and the synthetic corpus shape."""

from __future__ import annotations

from collections.abc import Callable

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
TARGET_WARM_P50_MS = 100.0
TARGET_WARM_P95_MS = 200.0
TARGET_COLD_START_S = 5.0
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
# Articles written (journal + in-memory append) into each synthetic index for the write timing.
WRITE_SAMPLES = 20

Say = Callable[[str], None]

# Stores compared side by side on the synthetic corpora (``--stores``). Milvus Lite is a
# pure-Python Milvus: it fills at a few hundred chunks per second here, so sizes above
# MILVUS_MAX_CHUNKS fill only the local store unless ``--milvus-max`` says otherwise.
STORE_KINDS = ("local", "milvus-lite", "milvus-server")
DEFAULT_STORES = ("local", "milvus-lite")
QUICK_STORES = ("local",)
MILVUS_MAX_CHUNKS = 100_000
# Untimed questions before the timed ones: Milvus loads a sealed segment's indexes on first search.
STORE_WARMUP_QUERIES = 3
MILVUS_SERVER_START_S = 60.0
# The longest one Milvus call may take in the bench (QA_MILVUS_TIMEOUT_S is sized for serving): the
# first search after a fill loads every sealed segment's indexes, which takes long on a busy machine.
BENCH_MILVUS_TIMEOUT_S = 600.0
