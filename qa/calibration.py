"""Confidence as a probability: Platt scaling of the reader's score, and the measures that check it.

The reader ranks a span by ``x``, its logit over the no-answer logit of the passage window it was
read in (start + end logits, SQuAD 2.0 style). A Platt fit ``p = sigmoid(a * x + b)`` maps that to
the probability that the answer is right (token F1 >= ``RIGHT_F1`` against a gold answer; the
top candidate of an unanswerable question is never right). A logistic fit adds named features of
the question and the passage (``extra``, :mod:`qa.read.answerability`):
``p = sigmoid(a * x + b + sum(w_k * f_k))``. It is fitted on the pipeline's own
top answers over held-out questions (open mode) and shipped in the model folder as
``calibration.json``, with the default ``min_confidence``: the probability below which the
product says "not in the articles", chosen there to maximise F1.

Example::

    cal = Calibration.load(Path("qa/models/reader"))
    p = cal.probability(2.3) if cal is not None else None
    p = cal.probability(2.3, [0.25, 1.0])  # with cal.extra naming two features
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
    """``p = sigmoid(a * x + b + sum(w * f))`` over the ``extra`` features named (none for a Platt
    fit), and the default abstention threshold on ``p``."""

    a: float
    b: float
    min_confidence: float
    method: str = "platt"
    feature: str = "span logit minus its passage window's no-answer logit (type-adjusted)"
    fitted_on: dict[str, Any] = field(default_factory=dict)
    extra: tuple[str, ...] = ()  # names of the further features, in the order of ``weights``
    weights: tuple[float, ...] = ()

    def probability(self, x: float, values: Sequence[float] = ()) -> float:
        """The probability for score ``x`` and the ``extra`` features' ``values`` (same order).

        Raises:
            ValueError: ``values`` does not hold one value per extra feature.
        """
        if len(values) != len(self.weights):
            raise ValueError(f"this calibration takes {len(self.weights)} extra feature values "
                             f"({', '.join(self.extra) or 'none'}), got {len(values)}")
        return sigmoid(self.a * x + self.b + sum(w * v for w, v in zip(self.weights, values, strict=True)))

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
                      str(raw.get("method", "platt")), str(raw.get("feature", "")), dict(raw.get("fitted_on", {})),
                      tuple(str(n) for n in raw.get("extra", ())), tuple(float(w) for w in raw.get("weights", ())))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CalibrationError(
                f"cannot read {path} ({type(e).__name__}: {e}); delete it to run uncalibrated"
            ) from e
        finite = all(math.isfinite(v) for v in (cal.a, cal.b, *cal.weights))
        if not 0.0 <= cal.min_confidence <= 1.0 or not finite:
            raise CalibrationError(f"{path}: a, b and weights must be finite and min_confidence in [0, 1]")
        if len(cal.extra) != len(cal.weights):
            raise CalibrationError(f"{path}: {len(cal.extra)} extra features but {len(cal.weights)} weights")
        return cal


def fit_logistic(rows: Sequence[Sequence[float]], ys: Sequence[bool],
                 iterations: int = 100) -> tuple[list[float], float]:
    """Maximum-likelihood weights and bias of ``P(y) = sigmoid(w . row + bias)`` by Newton's method
    with step halving (each step lowers the loss), on standardised columns, with Platt's target
    smoothing (``(n+ + 1) / (n+ + 2)`` and ``1 / (n- + 2)``) so separable data stay finite. A
    constant column gets weight 0.

    Raises:
        ValueError: fewer than two rows, rows of unequal width, or a count that differs from ``ys``.
    """
    if len(rows) != len(ys) or len(rows) < 2:
        raise ValueError(f"need two or more (row, y) pairs of equal count, got {len(rows)} and {len(ys)}")
    if len({len(r) for r in rows}) != 1:
        raise ValueError("every row must hold the same number of features")
    x = np.asarray(rows, dtype=np.float64)
    y = np.asarray(ys, dtype=bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    t = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    mu, sd = x.mean(axis=0), x.std(axis=0)
    keep = sd > 0
    z = np.zeros_like(x)
    z[:, keep] = (x[:, keep] - mu[keep]) / sd[keep]
    z = np.hstack([z, np.ones((len(z), 1))])
    theta = np.zeros(z.shape[1])
    theta[-1] = math.log((n_pos + 1.0) / (n_neg + 1.0))

    def loss(th: np.ndarray) -> float:
        s = z @ th  # -[t log p + (1 - t) log(1 - p)] = log(1 + e^s) - t s
        return float(np.sum(np.logaddexp(0.0, s) - t * s))

    current = loss(theta)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(z @ theta)))
        grad = z.T @ (p - t)
        # A small ridge keeps the step finite where the data separate (p (1 - p) -> 0).
        hess = (z * (p * (1.0 - p))[:, None]).T @ z + 1e-9 * np.eye(z.shape[1])
        step_dir = np.linalg.solve(hess, grad)
        step = 1.0
        while step > 1e-6:
            candidate = theta - step * step_dir
            new = loss(candidate)
            if new <= current:
                break
            step /= 2.0
        else:
            break
        converged = current - new < 1e-12 * max(1.0, current)
        theta, current = candidate, new
        if converged:
            break
    # Back to the raw features: w . z + c with z = (x - mu) / sd.
    w = np.where(keep, theta[:-1] / np.where(keep, sd, 1.0), 0.0)
    bias = float(theta[-1] - np.sum(w * mu))
    return [float(v) for v in w], bias


def fit_platt(xs: Sequence[float], ys: Sequence[bool], iterations: int = 100) -> tuple[float, float]:
    """Maximum-likelihood ``(a, b)`` of ``P(y) = sigmoid(a x + b)`` (:func:`fit_logistic` on one column).

    Raises:
        ValueError: fewer than two points, or lengths differ.
    """
    (a,), b = fit_logistic([[x] for x in xs], ys, iterations)
    return a, b


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


def default_threshold(confidences: Sequence[float], answered_f1: Sequence[float], answerable: Sequence[bool],
                      resamples: int = 200, seed: int = 0) -> tuple[float, float, float, float]:
    """The product's default abstention threshold: the lowest on the grid of :func:`best_threshold`
    whose F1 is within one bootstrap standard error of the best threshold's (the error of the paired
    F1 difference over ``resamples`` resamples of the questions, seeded: the same data give the same
    threshold). Near its top the F1 curve is flat, and where the data cannot tell thresholds apart,
    the product answers. Returns that threshold and its F1, then the best threshold and its F1."""
    best_t, best_f1 = best_threshold(confidences, answered_f1, answerable)
    conf = np.asarray(confidences, dtype=np.float64)
    f1 = np.asarray(answered_f1, dtype=np.float64)
    abstain = np.where(np.asarray(answerable, dtype=bool), 0.0, 1.0)
    grid = np.arange(100) / 100
    # per[k, i]: question i's F1 under threshold grid[k] (answered: its F1; withheld: right when unanswerable).
    per = np.where(conf[None, :] >= grid[:, None], f1[None, :], abstain[None, :])
    k_best = round(best_t * 100)
    rng = np.random.default_rng(seed)
    diffs = np.empty((resamples, len(grid)))
    for r in range(resamples):
        idx = rng.integers(0, len(conf), len(conf))
        means = per[:, idx].mean(axis=1)
        diffs[r] = means - means[k_best]
    se = diffs.std(axis=0)
    mean = per.mean(axis=1)
    k = next(k for k in range(len(grid)) if mean[k] >= best_f1 - se[k] - 1e-12)
    return float(grid[k]), float(mean[k]), best_t, best_f1


CARD_BEGIN, CARD_END = "<!-- calibration -->", "<!-- /calibration -->"


def _num(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "n/a"


def _rule(fitted: dict[str, Any]) -> str:
    """How the default threshold was chosen, for the card (older files chose the best F1)."""
    if "min_confidence_rule" not in fitted:
        return "the threshold with the best F1"
    return (f"{fitted['min_confidence_rule']} (the best: F1 {fitted['best_f1']:.3f} at "
            f"{fitted['best_f1_threshold']:.2f})")


def write_calibration_card(model: Path, cal: Calibration) -> None:
    """Put (or replace) the calibration section, between markers, in the model card."""
    f = cal.fitted_on
    if cal.extra:
        formula = (f"`p = sigmoid(a x + b + sum(w_k f_k))` with x = {cal.feature}, a = {cal.a:.4f}, "
                   f"b = {cal.b:.4f}, and the answerability features of `qa/read/answerability.py` (word "
                   f"rarity from {f.get('word_stats_paragraphs', '?')} training paragraphs, `word_stats.tsv.gz`): "
                   + ", ".join(f"{n} {w:+.4f}" for n, w in zip(cal.extra, cal.weights, strict=True))
                   + " (logistic regression)")
    else:
        formula = f"`p = sigmoid(a x + b)` with x = {cal.feature}, a = {cal.a:.4f}, b = {cal.b:.4f} (Platt scaling)"
    alone = f.get("score_alone")
    versus = (f" F1 when each title is scored by a fit on the other five (threshold by the same rule): "
              f"{_num(f.get('f1_leave_one_title_out'))}. The reader's score alone (Platt scaling) on the same "
              f"answers: F1 {alone['f1_at_min_confidence']:.3f} at its default threshold (best "
              f"{_num(alone.get('best_f1'))}), {_num(alone.get('f1_leave_one_title_out'))} leave-one-title-out; "
              f"ECE {alone['ece_in_sample']:.3f} in sample and {alone['ece_cross_fitted_by_title']:.3f} fitted on "
              "half the titles." if isinstance(alone, dict) else "")
    lines = [
        CARD_BEGIN, "## Confidence calibration", "",
        f"The answer's score is the probability that it is right ({f['right']}): {formula}, fitted by `qa calibrate` "
        f"on the pipeline's own top answers to {f['questions']} held-out questions ({f['answerable']} answerable) "
        f"of `{Path(f['data']).name}`, {f['mode']}, {f['top_k']} passages read. Shipped as `calibration.json`.",
        "",
        f"Expected calibration error (10 equal-width bins): {f['ece_in_sample']:.3f} in sample, "
        f"{f['ece_cross_fitted_by_title']:.3f} fitted on half the titles and measured on the other half; "
        f"{f['ece_uncalibrated_margin0']:.3f} for the uncalibrated sigmoid(x).{versus}",
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
        f"Default `QA_MIN_CONFIDENCE={cal.min_confidence:.2f}`: {_rule(f)} on these questions "
        f"(F1 {f['f1_at_min_confidence']:.3f}; an abstention counts right on an unanswerable question). F1 at other "
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
