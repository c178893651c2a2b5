"""Average the weights of two or more readers of one lineage (a "model soup" / checkpoint average).

Readers fine-tuned one after the other from the same start sit in one basin of the loss; the mean
of their weights often validates better than either. The result is a reader folder like the inputs
(fp16 safetensors, config and tokenizer from the first), without calibration: score it with
tools/reader_candidate.sh before it replaces anything.

    .venv/bin/python tools/average_readers.py OUT READER [READER ...] [--weights 0.5,0.5]
"""

from __future__ import annotations

import argparse
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
