"""Confidence calibration: the Platt fit, ECE, risk-coverage, the threshold, the file, the reader's use."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from qa.calibration import (
    CALIBRATION_FILE,
    Calibration,
    CalibrationError,
    best_threshold,
    default_threshold,
    expected_calibration_error,
    fit_logistic,
    fit_platt,
    reliability_table,
    risk_coverage,
    sigmoid,
)
from qa.read import UNCALIBRATED_MIN_CONFIDENCE, min_confidence_for
from qa.settings import Settings


def test_platt_recovers_the_generating_curve() -> None:
    rng = random.Random(3)
    xs = [rng.uniform(-6.0, 6.0) for _ in range(6000)]
    ys = [rng.random() < sigmoid(0.7 * x - 1.2) for x in xs]
    a, b = fit_platt(xs, ys)
    assert a == pytest.approx(0.7, abs=0.08) and b == pytest.approx(-1.2, abs=0.12)
    probs = [sigmoid(a * x + b) for x in xs]
    assert expected_calibration_error(probs, ys) < 0.03
    # The raw sigmoid(x) of these scores is far from calibrated; the fit is what fixes it.
    assert expected_calibration_error([sigmoid(x) for x in xs], ys) > 0.1


def test_platt_stays_finite_on_separable_data() -> None:
    a, b = fit_platt([-2.0, -1.0, 1.0, 2.0], [False, False, True, True])
    assert math.isfinite(a) and math.isfinite(b) and a > 0
    with pytest.raises(ValueError):
        fit_platt([1.0], [True])


def test_logistic_fit_recovers_several_weights_and_ignores_a_constant_column() -> None:
    rng = random.Random(5)
    rows = [[rng.uniform(-4.0, 4.0), float(rng.randint(0, 3)), 2.0] for _ in range(8000)]
    ys = [rng.random() < sigmoid(0.6 * x - 0.9 * m + 0.5) for x, m, _ in rows]
    (wx, wm, wc), bias = fit_logistic(rows, ys)
    assert wx == pytest.approx(0.6, abs=0.08) and wm == pytest.approx(-0.9, abs=0.12)
    assert wc == 0.0 and bias == pytest.approx(0.5, abs=0.15)
    # One column is Platt scaling.
    xs = [r[0] for r in rows]
    (w,), b = fit_logistic([[x] for x in xs], ys)
    assert (w, b) == fit_platt(xs, ys)
    with pytest.raises(ValueError, match="same number"):
        fit_logistic([[1.0], [1.0, 2.0]], [True, False])


def test_ece_by_hand() -> None:
    assert expected_calibration_error([0.9] * 10, [True] * 9 + [False]) == pytest.approx(0.0)
    assert expected_calibration_error([0.9] * 10, [True] * 5 + [False] * 5) == pytest.approx(0.4)
    # Two bins, half the answers each: |1.0 - 0.75| and |0.0 - 0.25|, weighted 1/2 each.
    assert expected_calibration_error([0.75, 0.75, 0.25, 0.25], [True, True, False, False]) == pytest.approx(0.25)
    # A confidence of exactly 1.0 falls in the last bin, 0.0 in the first.
    assert expected_calibration_error([1.0, 0.0], [True, False]) == pytest.approx(0.0)
    rows = reliability_table([0.95, 0.91, 0.05], [True, False, False])
    assert [(r["n"], r["right"]) for r in rows] == [(1, 0.0), (2, 0.5)]


def test_risk_coverage_takes_the_most_confident_first() -> None:
    conf = [0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4, 0.5, 0.05]
    right = [True, False, True, False, False, False, True, False, True, False]
    rows = risk_coverage(conf, right)
    assert [r["answers"] for r in rows] == list(range(1, 11))
    assert rows[0]["right"] == 1.0 and rows[0]["min_confidence"] == 0.9
    assert rows[2]["right"] == pytest.approx(2 / 3)  # 0.9 yes, 0.8 yes, 0.7 no
    assert rows[-1]["right"] == pytest.approx(0.4) and rows[-1]["min_confidence"] == 0.05


def test_best_threshold_maximises_f1() -> None:
    # Two answerable questions answered right with high confidence, two unanswerable with low.
    conf, f1, answerable = [0.9, 0.8, 0.3, 0.2], [1.0, 1.0, 0.0, 0.0], [True, True, False, False]
    t, best = best_threshold(conf, f1, answerable)
    assert best == 1.0 and 0.3 < t <= 0.8
    # Answering everything scores only the answerable ones.
    assert best_threshold(conf, f1, answerable, [0.0]) == (0.0, 0.5)


def test_default_threshold_answers_where_the_f1_curve_is_flat() -> None:
    # Below 0.3 only unanswerable questions, above 0.5 only right answers; in between, each right
    # answer has an unanswerable question at its confidence, so F1 is flat there, but for one more
    # unanswerable question at 0.455 that makes 0.46 the best threshold by a single question.
    conf, f1, answerable = [0.1] * 100 + [0.9] * 100, [0.0] * 100 + [1.0] * 100, [False] * 100 + [True] * 100
    for k in range(30, 50):
        conf += [k / 100 + 0.005] * 2
        f1 += [1.0, 0.0]
        answerable += [True, False]
    conf.append(0.455)
    f1.append(0.0)
    answerable.append(False)
    t, f1_t, best_t, best_f1 = default_threshold(conf, f1, answerable)
    assert (best_t, best_f1) == best_threshold(conf, f1, answerable) and best_t == 0.46
    assert t == 0.11 and best_f1 - f1_t == pytest.approx(1 / len(conf))
    assert default_threshold(conf, f1, answerable) == (t, f1_t, best_t, best_f1)  # seeded: reproducible
    # A sharp optimum (every answer right above 0.5, wrong below) leaves no room: the best is the default.
    sharp = [0.9] * 50 + [0.1] * 50
    right_f1 = [1.0] * 50 + [0.0] * 50
    t, _, best_t, _ = default_threshold(sharp, right_f1, [True] * 50 + [False] * 50)
    assert t == best_t


def test_file_round_trip_and_clear_errors(tmp_path: Path) -> None:
    assert Calibration.load(tmp_path) is None
    cal = Calibration(0.5, -1.0, 0.35, fitted_on={"questions": 10})
    cal.save(tmp_path)
    back = Calibration.load(tmp_path)
    assert back == cal and back is not None and back.probability(2.0) == pytest.approx(0.5)
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps({"a": 1.0}))
    with pytest.raises(CalibrationError, match="KeyError"):
        Calibration.load(tmp_path)
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps({"a": 1.0, "b": 0.0, "min_confidence": 3}))
    with pytest.raises(CalibrationError, match=r"\[0, 1\]"):
        Calibration.load(tmp_path)
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps({"a": 1.0, "b": 0.0, "min_confidence": 0.5,
                                                          "extra": ["missing_names"], "weights": []}))
    with pytest.raises(CalibrationError, match="1 extra features but 0 weights"):
        Calibration.load(tmp_path)


def test_a_calibration_with_extra_features_weighs_them() -> None:
    cal = Calibration(0.5, -1.0, 0.4, method="logistic", extra=("missing_names", "missing_count"),
                      weights=(-2.0, 0.25))
    assert cal.probability(2.0, [0.0, 0.0]) == pytest.approx(0.5)
    assert cal.probability(2.0, [1.0, 4.0]) == pytest.approx(sigmoid(-1.0))
    with pytest.raises(ValueError, match="2 extra feature values"):
        cal.probability(2.0)


def test_a_calibration_with_extra_features_round_trips(tmp_path: Path) -> None:
    cal = Calibration(0.5, -1.0, 0.4, method="logistic", extra=("missing_names",), weights=(-2.0,))
    cal.save(tmp_path)
    assert Calibration.load(tmp_path) == cal


class _Calibrated:
    default_min_confidence = 0.42


def test_min_confidence_setting_then_model_default_then_half() -> None:
    assert min_confidence_for(Settings(min_confidence=0.2), _Calibrated()) == 0.2
    assert min_confidence_for(Settings(), _Calibrated()) == 0.42
    assert min_confidence_for(Settings(), object()) == UNCALIBRATED_MIN_CONFIDENCE
    with pytest.raises(ValueError):
        Settings(min_confidence=1.5)
