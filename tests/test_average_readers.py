"""tools/average_readers.py: the weighted mean of two readers, saved as a loadable fp16 reader."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import make_tiny_qa_model

TOOL = Path(__file__).resolve().parents[1] / "tools" / "average_readers.py"


def _tool():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("average_readers", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_weighted_mean_loads_as_a_reader(tmp_path: Path) -> None:
    from transformers import AutoModelForQuestionAnswering

    a = make_tiny_qa_model(tmp_path / "a")
    b = make_tiny_qa_model(tmp_path / "b")
    state_b = {k: v + 1.0 for k, v in load_file(str(b / "model.safetensors")).items()}
    save_file(state_b, str(b / "model.safetensors"), metadata={"format": "pt"})
    assert _tool().main([str(tmp_path / "mean"), str(a), str(b), "--weights", "3,1"]) == 0
    state_a = load_file(str(a / "model.safetensors"))
    mean = load_file(str(tmp_path / "mean" / "model.safetensors"))
    assert set(mean) == set(state_a) and {v.dtype for v in mean.values()} == {torch.float16}
    for k, v in mean.items():
        expected = 0.75 * state_a[k].float() + 0.25 * state_b[k].float()
        torch.testing.assert_close(v.float(), expected, atol=2e-3, rtol=2e-3)
    AutoModelForQuestionAnswering.from_pretrained(str(tmp_path / "mean"))  # a complete reader folder


def test_refuses_readers_of_different_shapes(tmp_path: Path) -> None:
    a = make_tiny_qa_model(tmp_path / "a")
    b = make_tiny_qa_model(tmp_path / "b")
    state = load_file(str(b / "model.safetensors"))
    state.pop(next(iter(state)))
    save_file(state, str(b / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(SystemExit, match="tensors differ"):
        _tool().main([str(tmp_path / "mean"), str(a), str(b)])
