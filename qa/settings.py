"""One settings object for the whole product (environment prefix ``QA_``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EMBED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGED_READER_DIR = Path(__file__).resolve().parent / "models" / "reader"


class Settings(BaseSettings):
    """Every tunable of the product; read from ``QA_*`` environment variables.

    Example: ``QA_TOP_K=3 ask "When was the second Istanbul round?"``.
    """

    model_config = SettingsConfigDict(env_prefix="QA_", extra="ignore")

    # Where things live.
    corpus_dir: Path = Path("seeds")
    index_dir: Path = Path("index")

    # Where the index lives (qa/store/): local FAISS + BM25 + journal in index_dir, or Milvus.
    store: Literal["local", "milvus"] = Field(
        default="local",
        description="local: FAISS + BM25 + journal in index_dir (fast, nothing to run); milvus: a Milvus collection "
        "that holds chunks, vectors and the articles' text, shared by any number of `qa serve` replicas",
    )
    milvus_uri: str = Field(
        default="index/milvus.db",
        description="with store milvus: a path ending in .db runs Milvus Lite embedded in this process (one process "
        "per path); http://host:19530 talks to a Milvus server or cluster (or a `milvus-lite server`)",
    )
    milvus_token: str | None = Field(default=None, description="Milvus credentials (user:password or an API key)")
    milvus_collection: str = Field(
        default="qa", description="the chunk collection's name; the articles live in <name>_articles"
    )
    milvus_timeout_s: float = Field(
        default=10.0,
        gt=0.0,
        description="longest one call to Milvus may take (connecting included); past it, or when the server cannot "
        "be reached, the call fails as 'store unavailable' (the API answers 503 store_unavailable)",
    )

    # How the transformer models run.
    backend: Literal["auto", "onnx", "torch"] = Field(
        default="auto",
        description="runtime of the embedding and QA models: onnx (ONNX Runtime on an export cached in "
        "onnx_cache_dir; no torch import, so a cold ask starts seconds sooner), torch, or auto: the embedder on "
        "onnx; the reader on torch bf16 where the CPU has native bf16 (faster once warm), else on onnx",
    )
    fast_start: bool = Field(
        default=False,
        description="with backend auto, run the reader on onnx even where torch bf16 is faster once warm: a "
        "cold start without torch takes about 3 s instead of 7 s here. `ask` (one question per process) turns it "
        "on unless QA_FAST_START is set; servers and evaluations keep the faster warm reader",
    )
    onnx_cache_dir: Path | None = Field(
        default=None, description="where ONNX exports are cached; default $XDG_CACHE_HOME/article-qa/onnx"
    )

    # Embedding and chunking.
    embed_model: str = DEFAULT_EMBED_MODEL
    embed_batch_size: int = Field(default=32, ge=1)
    chunk_tokens: int = Field(default=160, ge=16, description="max embedding-model tokens per chunk")
    chunk_overlap_tokens: int = Field(
        default=32, ge=0, description="tokens of trailing sentences repeated in the next chunk"
    )

    # Retrieval.
    top_k: int = Field(default=3, ge=1, le=50, description="chunks handed to the reader")
    candidates_k: int = Field(default=30, ge=1, description="dense and BM25 candidates each before fusion")
    rrf_k: int = Field(default=60, ge=1, description="reciprocal rank fusion constant")
    hnsw_min_chunks: int = Field(
        default=50_000,
        ge=1,
        description="corpus size (chunks) from which an HNSW index replaces flat search; `qa bench` measured flat "
        "search at ~0.07 ms per 1,000 chunks per question on 2 cores, so ~3.5 ms here, HNSW under 0.5 ms",
    )

    # Writes (POST/DELETE /documents) go to a journal next to the saved index; past these sizes a
    # write also saves a fresh full version (and rebuilds FAISS and BM25 when many rows are deleted).
    journal_compact_fraction: float = Field(
        default=0.25,
        gt=0.0,
        description="journal rows (chunks added or deleted) as a fraction of the saved version's rows, and deleted "
        "rows as a fraction of all rows, beyond which a write compacts the index",
    )
    journal_compact_min_chunks: int = Field(
        default=10_000, ge=0, description="journal rows below which a write never compacts the index"
    )
    compact_in_background: bool = Field(
        default=True,
        description="compact in a background thread, so the write that crossed the bound is answered at once "
        "(writes issued meanwhile wait for it, at most write_timeout_s); false: inline, as part of that write",
    )
    write_timeout_s: float = Field(
        default=30.0,
        ge=0.0,
        description="longest a write waits for another write, a compaction, or another process holding the "
        "index folder (a `qa index build`); beyond it the write is refused unchanged (the API answers 503 busy)",
    )
    index_poll_s: float = Field(
        default=1.0,
        ge=0.0,
        description="how often a server checks whether another process rebuilt or wrote to its index folder and "
        "reloads it (0: never)",
    )

    # Reading and answering.
    reader: Literal["auto", "transformers", "span"] = "auto"
    reader_model: str = str(PACKAGED_READER_DIR)
    reader_max_length: int = Field(default=256, ge=32)
    reader_stride: int = Field(default=96, ge=0)
    reader_precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        default="auto",
        description="arithmetic of the QA model's forward pass on CPU. torch backend: fp32, bf16 autocast, or auto "
        "(bf16 where the CPU has bf16 instructions, about 1.5x faster at the same validation F1; fp32 elsewhere). "
        "onnx backend: fp32 (auto) or int8 (ONNX Runtime dynamic quantisation, per channel, of a cached copy). "
        "torch's dynamic int8 was measured and rejected: a third of the answers changed",
    )
    reader_n_best: int = Field(default=20, ge=1)
    max_answer_tokens: int = Field(default=30, ge=1)
    reader_type_weight: float = Field(
        default=1.0,  # chosen with the margin on the held-out SQuAD titles (qa/models/reader/README.md)
        ge=0.0,
        description="logits taken from a QA-model span whose type does not fit the question (a date for "
        "'how long'); 0 turns answer typing off",
    )
    reader_passage_norm: bool = Field(
        default=True,
        description="rank a span by its logit over the no-answer logit of its own passage window, so that "
        "passages read apart are compared on one scale (otherwise by its raw logit); open-mode F1 on the "
        "1,867 held-out SQuAD questions 52.5% -> 54.1%",
    )
    reader_widen_entities: bool = Field(
        default=True,  # F1 unchanged on the held-out SQuAD titles (56.5%) and the test set (55.5%)
        description="widen a QA-model span that lies inside a named entity fitting the question's answer type "
        "to the whole entity ('June' inside 'the 2nd of June')",
    )
    no_answer_margin: float | None = Field(
        default=None,
        description="expert setting: logits a span must beat its passage's no-answer logit by. Unset: 0 under the "
        "model's calibration (calibration.json), 3 for an uncalibrated model (the margin tuned for the first reader)",
    )
    min_confidence: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="answers whose confidence (the calibrated probability that the answer is right) is below this "
        "are withheld as 'not in the articles'. Unset: the default of the model's calibration.json (chosen on "
        "validation to maximise F1), else 0.5",
    )
    max_citations: int = Field(default=5, ge=1)

    # Input limits.
    max_question_chars: int = Field(default=500, ge=1)
    max_doc_id_chars: int = Field(default=128, ge=1)
    max_document_chars: int = Field(default=1_000_000, ge=1)
    max_title_chars: int = Field(default=300, ge=1)
    max_file_bytes: int = Field(default=50_000_000, ge=1, description="largest article file (a page, a PDF, an "
                                "archive) read from a corpus folder or `qa add`; a larger one is skipped by name")

    @field_validator("embed_model", "reader_model")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError(f"model name must not be empty, got {v!r}")
        return v

    @field_validator("milvus_uri")
    @classmethod
    def _milvus_uri(cls, v: str) -> str:
        v = v.strip()
        if not (v.endswith(".db") or re.fullmatch(r"(https?|tcp)://[^\s/]+(:\d+)?/?", v) or v.startswith("unix:")):
            raise ValueError(f"milvus_uri must be a Milvus Lite file ending in .db (index/milvus.db) or a server "
                             f"address (http://host:19530), got {v!r}")
        return v

    @field_validator("milvus_collection")
    @classmethod
    def _milvus_collection(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,199}", v):
            raise ValueError(f"milvus_collection must be a letter or _ followed by letters, digits and _ (at most "
                             f"200), got {v!r}")
        return v

    @model_validator(mode="after")
    def _check_relations(self) -> Settings:
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError(
                f"chunk_overlap_tokens must be < chunk_tokens, got {self.chunk_overlap_tokens} >= {self.chunk_tokens}"
            )
        if self.reader_stride >= self.reader_max_length:
            raise ValueError(
                f"reader_stride must be < reader_max_length, got {self.reader_stride} >= {self.reader_max_length}"
            )
        return self
