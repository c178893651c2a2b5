"""Confidence as a probability: Platt scaling of the reader's score, and the measures that check it.

The reader ranks a span by ``x``, its logit over the no-answer logit of the passage window it was
read in (start + end logits, SQuAD 2.0 style). A Platt fit ``p = sigmoid(a * x + b)`` maps that to
the probability that the answer is right (token F1 >= ``RIGHT_F1`` against a gold answer; the
top candidate of an unanswerable question is never right). It is fitted on the pipeline's own
top answers over held-out questions (open mode) and shipped in the model folder as
``calibration.json``, with the default ``min_confidence``: the probability below which the
product says "not in the articles", chosen there to maximise F1.

Example::

    cal = Calibration.load(Path("qa/models/reader"))
    p = cal.probability(2.3) if cal is not None else None
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CALIBRATION_FILE = "calibration.json"
# An answer is "right" when its token F1 against a gold answer is at least this.
RIGHT_F1 = 0.5
ECE_BINS = 10
COVERAGES = tuple(c / 10 for c in range(1, 11))


class CalibrationError(ValueError):
    """A calibration file is unreadable or not in the expected layout."""


def sigmoid(x: float) -> float:
    """The logistic function, without overflow for large ``|x|``."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


@dataclass(frozen=True)
class Calibration:
    """``p = sigmoid(a * x + b)`` and the default abstention threshold on ``p``."""

    a: float
    b: float
    min_confidence: float
    method: str = "platt"
    feature: str = "span logit minus its passage window's no-answer logit (type-adjusted)"
    fitted_on: dict[str, Any] = field(default_factory=dict)

    def probability(self, x: float) -> float:
        return sigmoid(self.a * x + self.b)

    def save(self, folder: Path) -> Path:
        path = folder / CALIBRATION_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: Path) -> Calibration | None:
        """The model folder's calibration, or None when it ships none.

        Raises:
            CalibrationError: the file exists but is not a calibration.
        """
        path = folder / CALIBRATION_FILE
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            cal = cls(float(raw["a"]), float(raw["b"]), float(raw["min_confidence"]),
                      str(raw.get("method", "platt")), str(raw.get("feature", "")), dict(raw.get("fitted_on", {})))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CalibrationError(
                f"cannot read {path} ({type(e).__name__}: {e}); delete it to run uncalibrated"
            ) from e
        if not 0.0 <= cal.min_confidence <= 1.0 or not (math.isfinite(cal.a) and math.isfinite(cal.b)):
            raise CalibrationError(f"{path}: a and b must be finite and min_confidence in [0, 1]")
        return cal


def _nll(xs: Sequence[float], targets: Sequence[float], a: float, b: float) -> float:
    """Cross-entropy of ``sigmoid(a x + b)`` against soft targets (stable for large ``|a x + b|``)."""
    total = 0.0
    for x, t in zip(xs, targets, strict=True):
        z = a * x + b
        # -[t log p + (1 - t) log(1 - p)] = log(1 + e^z) - t z
        total += (z if z > 0 else 0.0) + math.log1p(math.exp(-abs(z))) - t * z
    return total


def fit_platt(xs: Sequence[float], ys: Sequence[bool], iterations: int = 100) -> tuple[float, float]:
    """Maximum-likelihood ``(a, b)`` of ``P(y) = sigmoid(a x + b)`` by Newton's method with step
    halving (each step lowers the loss), on standardised ``x``, with Platt's target smoothing
    (``(n+ + 1) / (n+ + 2)`` and ``1 / (n- + 2)``) so separable data stays finite.

    Raises:
        ValueError: fewer than two points, or lengths differ.
    """
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError(f"need two or more (x, y) pairs of equal count, got {len(xs)} and {len(ys)}")
    n_pos = sum(1 for y in ys if y)
    n_neg = len(ys) - n_pos
    hi, lo = (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0)
    targets = [hi if y else lo for y in ys]
    mu = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mu) ** 2 for x in xs) / len(xs)) or 1.0
    zs = [(x - mu) / sd for x in xs]
    a, b = 0.0, math.log((n_pos + 1.0) / (n_neg + 1.0))
    loss = _nll(zs, targets, a, b)
    for _ in range(iterations):
        g_a = g_b = h_aa = h_ab = h_bb = 0.0
        for z, t in zip(zs, targets, strict=True):
            p = sigmoid(a * z + b)
            d, w = p - t, p * (1.0 - p)
            g_a += d * z
            g_b += d
            h_aa += w * z * z
            h_ab += w * z
            h_bb += w
        # A small ridge keeps the step finite where the data separate (w -> 0).
        h_aa, h_bb = h_aa + 1e-9, h_bb + 1e-9
        det = h_aa * h_bb - h_ab * h_ab
        da = (h_bb * g_a - h_ab * g_b) / det
        db = (h_aa * g_b - h_ab * g_a) / det
        step = 1.0
        while step > 1e-6:
            na, nb = a - step * da, b - step * db
            new = _nll(zs, targets, na, nb)
            if new <= loss:
                break
            step /= 2.0
        else:
            break
        converged = loss - new < 1e-12 * max(1.0, loss)
        a, b, loss = na, nb, new
        if converged:
            break
    # Back to the raw feature: a z + b with z = (x - mu) / sd.
    return a / sd, b - a * mu / sd


def expected_calibration_error(confidences: Sequence[float], right: Sequence[bool], bins: int = ECE_BINS) -> float:
    """ECE over ``bins`` equal-width bins of confidence: the mean |accuracy - confidence| per bin,
    weighted by the bin's share of the answers (a confidence of 1.0 falls in the last bin)."""
    if len(confidences) != len(right) or not confidences:
        raise ValueError("need one or more confidences, one per correctness flag")
    total = [0.0] * bins
    hits = [0.0] * bins
    counts = [0] * bins
    for c, r in zip(confidences, right, strict=True):
        k = min(bins - 1, max(0, int(c * bins)))
        total[k] += c
        hits[k] += 1.0 if r else 0.0
        counts[k] += 1
    n = len(confidences)
    return sum(abs(hits[k] - total[k]) / n for k in range(bins) if counts[k])


def reliability_table(confidences: Sequence[float], right: Sequence[bool],
                      bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Per equal-width bin: its range, answer count, mean confidence and share right."""
    rows = []
    for k in range(bins):
        lo, hi = k / bins, (k + 1) / bins
        inside = [(c, r) for c, r in zip(confidences, right, strict=True)
                  if min(bins - 1, max(0, int(c * bins))) == k]
        if inside:
            rows.append({"lo": lo, "hi": hi, "n": len(inside),
                         "confidence": sum(c for c, _ in inside) / len(inside),
                         "right": sum(1 for _, r in inside if r) / len(inside)})
    return rows


def risk_coverage(confidences: Sequence[float], right: Sequence[bool],
                  coverages: Sequence[float] = COVERAGES) -> list[dict[str, float]]:
    """For each coverage c: the share right among the ``ceil(c * n)`` most confident answers, and
    the lowest confidence among them (the threshold that keeps that coverage)."""
    order = sorted(range(len(confidences)), key=lambda i: -confidences[i])
    rows = []
    for c in coverages:
        n = max(1, math.ceil(c * len(order) - 1e-9))
        top = order[:n]
        rows.append({"coverage": c, "answers": n, "right": sum(1 for i in top if right[i]) / n,
                     "min_confidence": confidences[top[-1]]})
    return rows


def best_threshold(confidences: Sequence[float], answered_f1: Sequence[float], answerable: Sequence[bool],
                   grid: Sequence[float] | None = None) -> tuple[float, float]:
    """The abstention threshold on confidence that maximises mean F1 (answered: its F1; abstained:
    1 when unanswerable, else 0), and that F1. Ties go to the lower threshold (answer more)."""
    points = grid if grid is not None else [t / 100 for t in range(0, 100)]
    best_t, best_f1 = 0.0, -1.0
    for t in points:
        f1 = sum(f if c >= t else (0.0 if a else 1.0)
                 for c, f, a in zip(confidences, answered_f1, answerable, strict=True)) / len(confidences)
        if f1 > best_f1 + 1e-12:
            best_t, best_f1 = t, f1
    return best_t, best_f1


CARD_BEGIN, CARD_END = "<!-- calibration -->", "<!-- /calibration -->"


def write_calibration_card(model: Path, cal: Calibration) -> None:
    """Put (or replace) the calibration section, between markers, in the model card."""
    f = cal.fitted_on
    lines = [
        CARD_BEGIN, "## Confidence calibration", "",
        f"The answer's score is the probability that it is right ({f['right']}): `p = sigmoid(a x + b)` "
        f"with x = {cal.feature}, a = {cal.a:.4f}, b = {cal.b:.4f} (Platt scaling), fitted by `qa calibrate` on "
        f"the pipeline's own top answers to {f['questions']} held-out questions ({f['answerable']} answerable) "
        f"of `{Path(f['data']).name}`, {f['mode']}, {f['top_k']} passages read. Shipped as `calibration.json`.",
        "",
        f"Expected calibration error (10 equal-width bins): {f['ece_in_sample']:.3f} in sample, "
        f"{f['ece_cross_fitted_by_title']:.3f} fitted on half the titles and measured on the other half; "
        f"{f['ece_uncalibrated_margin0']:.3f} for the uncalibrated sigmoid(x).",
        "",
        "| confidence bin | questions | mean confidence | share right |", "|---|---:|---:|---:|",
        *(f"| {r['lo']:.1f}-{r['hi']:.1f} | {r['n']} | {r['confidence']:.3f} | {r['right']:.3f} |"
          for r in f["reliability"]),
        "",
        "Risk-coverage: of the most confident share of the questions' top candidates, how many are right.",
        "",
        "| coverage | answers | share right | confidence at least |", "|---:|---:|---:|---:|",
        *(f"| {r['coverage']:.0%} | {r['answers']} | {r['right']:.3f} | {r['min_confidence']:.3f} |"
          for r in f["risk_coverage"]),
        "",
        f"Default `QA_MIN_CONFIDENCE={cal.min_confidence:.2f}`: the threshold with the best F1 on these questions "
        f"({f['f1_at_min_confidence']:.3f}; an abstention counts right on an unanswerable question). F1 at other "
        "thresholds: " + ", ".join(f"{t} -> {v:.3f}" for t, v in f["f1_by_min_confidence"].items()) + ".",
        CARD_END,
    ]
    card_path = model / "README.md"
    card = card_path.read_text(encoding="utf-8") if card_path.is_file() else ""
    if CARD_BEGIN in card and CARD_END in card:
        head, rest = card.split(CARD_BEGIN, 1)
        card = head + "\n".join(lines) + rest.split(CARD_END, 1)[1]
    else:
        card = card.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    card_path.write_text(card, encoding="utf-8")
