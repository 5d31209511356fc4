"""Tuned thresholds land between scores, respect their cap, survive float32, and degrade with a warning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from shipml.evaluate import ThresholdWarning, binary_rates, tune_threshold

# 8 validation rows, scores in ascending order; the lone negative at 0.625 sits among the positives
Y = np.array([0, 0, 0, 1, 0, 1, 1, 1])
P = np.array([0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0])


def _quiet(*args: object, **kwargs: object) -> float:
    """tune_threshold, failing the test on any ThresholdWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThresholdWarning)
        return tune_threshold(*args, **kwargs)  # type: ignore[arg-type]


def test_max_f1_exact() -> None:
    # flagging >= 0.5 gives TP 4, FP 1: F1 = 8/9, the best; the midpoint below 0.5 is 0.4375
    assert _quiet(Y, P, "max_f1") == 0.4375
    assert binary_rates(Y, P, 0.4375)["f1"] == pytest.approx(8 / 9)


@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        (0.0, 0.6875),  # no false positive: just above the negative at 0.625 (TP 3)
        (0.001, 0.6875),  # 0.001 x 4 negatives allows none either
        (0.25, 0.4375),  # one of 4 negatives may be flagged: down to the positive at 0.5 (TP 4)
        (0.5, 0.3125),  # two: down to the negative at 0.375 (TP 4, FP 2)
        (0.99, 0.1875),  # three: above the last negative still
    ],
)
def test_max_fpr_exact(cap: float, expected: float) -> None:
    assert _quiet(Y, P, "max_fpr", max_fpr=cap) == expected
    assert binary_rates(Y, P, expected)["fpr"] <= cap


def test_max_fpr_is_the_lowest_threshold_within_the_cap() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.3).astype(int)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.15), 0, 1)
    scores = np.unique(p)
    for cap in (0.0, 0.001, 0.01, 0.05, 0.2):
        t = _quiet(y, p, "max_fpr", max_fpr=cap)
        assert binary_rates(y, p, t)["fpr"] <= cap
        below = scores[scores < t]
        assert t < scores.max() and below.size  # the cap is met by a real split of the scores
        assert binary_rates(y, p, below.max())["fpr"] > cap  # one score lower breaks it
        assert not np.isin(t, p)  # between scores, never on one


def test_max_f1_ties_take_the_middle_or_the_higher() -> None:
    # two isolated optima: flag >= 0.8 (TP 1, FP 0, FN 1: F1 2/3) and flag all (TP 2, FP 2: F1 2/3)
    y, p = np.array([1, 0, 0, 1]), np.array([0.8, 0.6, 0.4, 0.2])
    assert _quiet(y, p, "max_f1") == pytest.approx(0.7)  # the higher threshold: fewer false positives
    # three optima, F1 2/3 each: flag >= 0.8 (TP 2, FP 0), >= 0.5 (TP 3, FP 2), all (TP 4, FP 4)
    y = np.array([1, 1, 0, 0, 1, 0, 0, 1])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    assert _quiet(y, p, "max_f1") == pytest.approx(0.45)  # the middle one of 0.1, 0.45, 0.75


def test_small_validation_sets() -> None:
    assert _quiet([0, 1], [0.3, 0.6], "max_f1") == pytest.approx(0.45)
    assert _quiet([0, 1], [0.3, 0.6], "max_fpr") == pytest.approx(0.45)
    assert _quiet([1, 0, 1], [0.2, 0.4, 0.9], "max_fpr", max_fpr=0.0) == pytest.approx(0.65)


@pytest.mark.parametrize(
    ("y", "p", "why"),
    [
        ([], [], "no rows"),
        ([1, 1, 1], [0.2, 0.5, 0.9], "no negative row"),
        ([0, 0], [0.2, 0.5], "no positive row"),
    ],
)
@pytest.mark.parametrize("strategy", ["max_f1", "max_fpr"])
def test_one_class_or_none_falls_back_to_half_with_a_warning(y: list, p: list, why: str, strategy: str) -> None:
    with pytest.warns(ThresholdWarning, match=why):
        assert tune_threshold(np.array(y, dtype=int), np.array(p), strategy) == 0.5  # type: ignore[arg-type]


def test_saturated_scores_in_float32() -> None:
    """A negative at exactly 1.0: only flagging nothing meets the cap, and float32 comparison agrees."""
    y = np.array([0, 1, 1, 0])
    p = np.array([1.0, 1.0, 0.75, 0.25], dtype=np.float32)
    with pytest.warns(ThresholdWarning, match="only flagging nothing"):
        t = tune_threshold(y, p, "max_fpr")
    assert t > 1.0
    assert not (p >= t).any()  # compared in float32 (NumPy casts the Python float down)
    # scores adjacent in float32 (their midpoint rounds up for 0.7, down for 0.3): the threshold splits
    # them identically in either precision
    for a in np.array([0.7, 0.3], dtype=np.float32):
        q = np.array([a, np.nextafter(a, np.float32(1)), np.float32(0.1)], dtype=np.float32)
        t = _quiet(np.array([0, 1, 0]), q, "max_fpr", max_fpr=0.0)
        assert (q >= t).tolist() == (q.astype(np.float64) >= t).tolist() == [False, True, False]


def test_extremes_zero_and_one() -> None:
    # every positive at 1.0, every negative at 0.0: the midpoint 0.5 separates them
    assert _quiet([0, 1, 0, 1], [0.0, 1.0, 0.0, 1.0], "max_f1") == 0.5
    # flagging all is the best F1 (4/5) and the lowest score is 0: only threshold 0 flags everything
    assert _quiet([1, 0, 1], [0.0, 0.5, 1.0], "max_f1") == 0.0


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="strategy"):
        tune_threshold([0, 1], [0.1, 0.9], "argmax")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tune_threshold([0, 1], [0.1, 1.5], "max_f1")
    with pytest.raises(ValueError, match="0 \\(negative\\) or 1"):
        tune_threshold([0, 2], [0.1, 0.9], "max_f1")
    with pytest.raises(ValueError, match="equal length"):
        binary_rates([0, 1], [0.1], 0.5)
    with pytest.raises(ValueError, match="max_fpr"):
        tune_threshold([0, 1], [0.1, 0.9], "max_fpr", max_fpr=1.0)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.77, 1.0, 1.1])
def test_binary_rates_match_sklearn(threshold: float) -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.4).astype(int)
    p = np.round(rng.random(300), 2)  # ties on the threshold: p >= t counts as positive
    rates = binary_rates(y, p, threshold)
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert (rates["tp"], rates["fp"], rates["tn"], rates["fn"]) == (tp, fp, tn, fn)
    assert rates["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0))
    assert rates["recall"] == pytest.approx(skm.recall_score(y, pred, zero_division=0))
    assert rates["f1"] == pytest.approx(skm.f1_score(y, pred, zero_division=0))
    assert rates["fpr"] == pytest.approx(fp / (fp + tn))
    assert all(isinstance(rates[k], int) for k in ("tp", "fp", "tn", "fn"))


def test_binary_rates_zero_division_is_zero() -> None:
    assert binary_rates([], [], 0.5) == dict.fromkeys(["precision", "recall", "f1", "fpr"], 0.0) | {
        "tp": 0,
        "fp": 0,
        "tn": 0,
        "fn": 0,
    }
    assert binary_rates([1, 1], [0.1, 0.2], 0.5)["precision"] == 0.0
