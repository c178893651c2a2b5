"""Average the weights of two or more readers of one lineage (a "model soup" / checkpoint average).

Readers fine-tuned one after the other from the same start sit in one basin of the loss; the mean
of their weights often validates better than either. The result is a reader folder like the inputs
(fp16 safetensors, config and tokenizer from the first; the last reader's ``train_info.json`` with
an ``average`` record naming each reader, its stage and its weight, which the model card shows),
without calibration or validation: score it with tools/reader_candidate.sh and
``qa train-reader --eval-only`` (the closed sweep and the card) before it replaces anything.

    .venv/bin/python tools/average_readers.py OUT READER [READER ...] [--weights 0.5,0.5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

COPIED = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
          "split.json")


def average(readers: list[Path], weights: list[float], out: Path) -> None:
    """Write the weighted mean of ``readers``' model.safetensors (fp32 sums, saved fp16) to ``out``."""
    import torch
    from safetensors.torch import load_file, save_file

    if len(readers) != len(weights):
        raise SystemExit(f"{len(readers)} readers but {len(weights)} weights")
    total = sum(weights)
    mean: dict[str, torch.Tensor] = {}
    keys: set[str] | None = None
    for path, w in zip(readers, weights, strict=True):
        state = load_file(str(path / "model.safetensors"))
        if keys is not None and set(state) != keys:
            raise SystemExit(f"{path}: its tensors differ from {readers[0]}'s; only one architecture averages")
        keys = set(state)
        for k, t in state.items():
            mean[k] = mean.get(k, torch.zeros(t.shape, dtype=torch.float32)) + t.float() * (w / total)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in mean.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    for name in COPIED:
        if (readers[0] / name).exists():
            shutil.copy(readers[0] / name, out / name)
    info_path = readers[-1] / "train_info.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        info["average"] = [entry for path, w in zip(readers, weights, strict=True)
                           for entry in _ends_of(path, w / total)]
        (out / "train_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _ends_of(reader: Path, weight: float) -> list[dict[str, object]]:
    """The stage end points behind ``reader`` with their share of ``weight``: the reader itself, or,
    when it is a mean already, that mean's own record, each weight scaled (a mean of a mean is a
    mean of the stage end points, so the card names what is really in the weights)."""
    info_path = reader / "train_info.json"
    inner = json.loads(info_path.read_text(encoding="utf-8")).get("average") if info_path.is_file() else None
    if inner:
        return [{**e, "weight": round(float(e["weight"]) * weight, 6)} for e in inner]
    return [{"reader": str(reader), "stage": _stage_of(reader), "weight": round(weight, 6)}]


def _stage_of(reader: Path) -> int | None:
    """The reader's last training stage (1-based), from its train_info.json; None when it has none."""
    from qa.train import previous_stages

    return len(previous_stages(str(reader))) or None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("readers", type=Path, nargs="+")
    p.add_argument("--weights", default=None, help="comma-separated, one per reader (default: equal)")
    args = p.parse_args(argv)
    weights = [float(w) for w in args.weights.split(",")] if args.weights else [1.0] * len(args.readers)
    average(args.readers, weights, args.out)
    print(f"wrote the mean of {len(args.readers)} readers to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
