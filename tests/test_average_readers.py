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


def test_the_mean_records_its_readers_and_the_card_says_so(tmp_path: Path) -> None:
    """train_info.json of the last reader, plus an ``average`` record (reader, stage, weight) that the
    model card turns into a "Weight average" section."""
    import json

    from qa.settings import PACKAGED_READER_DIR
    from qa.train import write_model_card

    info = json.loads((PACKAGED_READER_DIR / "train_info.json").read_text(encoding="utf-8"))
    info.pop("average", None)
    a = make_tiny_qa_model(tmp_path / "a")
    b = make_tiny_qa_model(tmp_path / "b")
    (a / "train_info.json").write_text(json.dumps({**info, "stages": info["stages"][:3]}), encoding="utf-8")
    (b / "train_info.json").write_text(json.dumps({**info, "stages": info["stages"][:4], "steps": 7}),
                                       encoding="utf-8")
    out = tmp_path / "mean"
    assert _tool().main([str(out), str(a), str(b), "--weights", "3,1"]) == 0
    mean_info = json.loads((out / "train_info.json").read_text(encoding="utf-8"))
    assert mean_info["steps"] == 7 and len(mean_info["stages"]) == 4  # the last reader's record
    assert mean_info["average"] == [{"reader": str(a), "stage": 3, "weight": 0.75},
                                    {"reader": str(b), "stage": 4, "weight": 0.25}]
    write_model_card(out, mean_info, None)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "### Weight average" in card and "0.75 x the end of stage 3 + 0.25 x the end of stage 4" in card


def test_a_mean_of_a_mean_names_the_stage_end_points_inside_it(tmp_path: Path) -> None:
    """Averaging a reader that is itself a mean records that mean's own end points, weights scaled."""
    import json

    from qa.settings import PACKAGED_READER_DIR

    info = json.loads((PACKAGED_READER_DIR / "train_info.json").read_text(encoding="utf-8"))
    info.pop("average", None)
    a = make_tiny_qa_model(tmp_path / "a")
    b = make_tiny_qa_model(tmp_path / "b")
    inner = [{"reader": "run/s3", "stage": 3, "weight": 0.5}, {"reader": "run/s4", "stage": 4, "weight": 0.5}]
    (a / "train_info.json").write_text(json.dumps({**info, "stages": info["stages"][:4], "average": inner}),
                                       encoding="utf-8")
    (b / "train_info.json").write_text(json.dumps({**info, "stages": (info["stages"] * 2)[:6]}), encoding="utf-8")
    out = tmp_path / "mean"
    assert _tool().main([str(out), str(a), str(b)]) == 0
    mean_info = json.loads((out / "train_info.json").read_text(encoding="utf-8"))
    assert mean_info["average"] == [{"reader": "run/s3", "stage": 3, "weight": 0.25},
                                    {"reader": "run/s4", "stage": 4, "weight": 0.25},
                                    {"reader": str(b), "stage": 6, "weight": 0.5}]
