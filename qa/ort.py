"""ONNX Runtime for the two transformer models: exported once from their weights, cached, then
run without importing torch, transformers or sentence-transformers.

Why: those imports cost about 4 s of a cold ``ask`` on 2 cores, and ONNX Runtime's fp32 forward
pass is as fast as torch's bf16 one here. The export needs torch (installed with the project) and
runs once per model version; the cache key is the model folder's path and the size and mtime of
its files, so retraining a model re-exports it.

Example::

    path = onnx_model(Path("qa/models/reader"), "qa", cache_dir=default_cache_dir())
    session = open_session(path)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from qa.errors import ModelUnavailable

log = logging.getLogger(__name__)

Kind = Literal["qa", "encoder"]
# Inputs of both exported graphs (BERT-style models); token_type_ids is dropped for models without it.
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/article-qa/onnx`` (``~/.cache/article-qa/onnx`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "article-qa" / "onnx"


def cache_dir(setting: Path | None) -> Path:
    """The ``onnx_cache_dir`` setting, or the default where it is unset."""
    return setting if setting is not None else default_cache_dir()


def onnx_available() -> bool:
    """True when onnxruntime can be imported (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def cpu_has_native_bf16() -> bool:
    """True where /proc/cpuinfo lists AVX512-BF16 or AMX-BF16 (read without importing torch). There
    torch's bf16 autocast beats ONNX Runtime's fp32 for the reader (113 vs 150 ms a question here)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(f" {flag}" in flags for flag in ("avx512_bf16", "amx_bf16"))


def model_key(folder: Path, kind: Kind) -> str:
    """Cache key of a model folder: its resolved path and each file's name, size and mtime."""
    h = hashlib.sha256(f"{kind}\0{folder.resolve()}".encode())
    for p in sorted(folder.iterdir()):
        if p.is_file():
            st = p.stat()
            h.update(f"\0{p.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _export(folder: Path, kind: Kind, out: Path) -> None:
    """Export the model in ``folder`` to ``out`` (torch's TorchScript-based ONNX exporter)."""
    import torch
    from transformers import AutoModel, AutoModelForQuestionAnswering, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one line on stderr says what happens; no weight-loading bars

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model: Any
    if kind == "qa":
        model = AutoModelForQuestionAnswering.from_pretrained(str(folder))
        outputs = ["start_logits", "end_logits"]
    else:
        model = AutoModel.from_pretrained(str(folder))
        outputs = ["last_hidden_state"]
    model = model.float().eval()
    enc = tokenizer(["a question?", "another"], ["a short passage", "text"], return_tensors="pt", padding=True)
    names = [n for n in INPUTS if n in enc]

    class Wrapped(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> Any:
            out = self.inner(**dict(zip(names, args, strict=True)))
            return tuple(getattr(out, o) for o in outputs)

    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, *outputs]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on tracing are about other models' code paths
        torch.onnx.export(Wrapped(model), tuple(enc[n] for n in names), str(out), input_names=names,
                          output_names=outputs, dynamic_axes=axes, opset_version=OPSET, dynamo=False)


def onnx_model(
    folder: Path, kind: Kind, cache_dir: Path, notify: Callable[[str], None] | None = None
) -> Path:
    """The cached ONNX export of the model in ``folder``; exported (atomically) if missing."""
    if not (folder / "config.json").is_file():
        raise ModelUnavailable(f"{folder} is not a transformers model folder (no config.json)")
    target = cache_dir / model_key(folder, kind)
    path = target / "model.onnx"
    if path.is_file() and (target / "source.json").is_file():
        return path
    if notify:
        notify(f"exporting {folder} to ONNX once, into {target}/ (about 10 s)")
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / f".model.{uuid.uuid4().hex}.onnx"
    try:
        _export(folder, kind, tmp)
        os.replace(tmp, path)
    except Exception as e:
        raise ModelUnavailable(
            f"cannot export {folder} to ONNX ({type(e).__name__}: {e}); set QA_BACKEND=torch"
        ) from e
    finally:
        tmp.unlink(missing_ok=True)
    source = {"folder": str(folder.resolve()), "kind": kind}
    (target / "source.json").write_text(json.dumps(source) + "\n")
    _prune(cache_dir, source, keep=target)
    return path


def _prune(cache_dir: Path, source: dict[str, str], keep: Path) -> None:
    """Remove older exports of the same model folder (a retrained model leaves its old export) and
    exports of folders that are gone (a deleted virtualenv or clone, a test's temporary model)."""
    import shutil

    for d in cache_dir.iterdir():
        if d == keep or not d.is_dir():
            continue
        try:
            other = json.loads((d / "source.json").read_text(encoding="utf-8"))
            gone = not Path(other["folder"]).is_dir()
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not an export of ours, or one being written: left alone
        if other == source or gone:
            shutil.rmtree(d, ignore_errors=True)


def quantized(path: Path) -> Path:
    """An int8 copy of the exported model at ``path`` (ONNX Runtime dynamic quantisation of the
    MatMul weights, per channel), made once beside it."""
    out = path.with_name("model.int8.onnx")
    if out.is_file():
        return out
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = path.with_name(f".model.int8.{uuid.uuid4().hex}.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs advice on other model kinds at WARNING
    try:
        quantize_dynamic(str(path), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        os.replace(tmp, out)
    except Exception as e:
        raise ModelUnavailable(f"cannot quantise {path} ({type(e).__name__}: {e}); set QA_READER_PRECISION=fp32") from e
    finally:
        root.setLevel(level)
        tmp.unlink(missing_ok=True)
    return out


def open_session(path: Path) -> Any:
    """An ONNX Runtime CPU session over ``path`` (thread-safe for concurrent ``run`` calls)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # Idle worker threads sleep instead of spinning: spinning ones steal the cores from torch (the
    # reader, run right after the embedder) and from other requests' threads.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise ModelUnavailable(
            f"cannot open {path} with ONNX Runtime ({type(e).__name__}); delete it to re-export, "
            "or set QA_BACKEND=torch"
        ) from e


def import_spacy() -> Any:
    """``import spacy`` without torch: thinc probes ``import torch`` at import time (about 2 s) but
    spaCy's CPU pipelines never use it. Where torch is already imported, a plain import."""
    if "spacy" in sys.modules or "torch" in sys.modules:
        import spacy

        return spacy
    sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` raise ImportError
    try:
        import spacy
    finally:
        del sys.modules["torch"]
    return spacy
