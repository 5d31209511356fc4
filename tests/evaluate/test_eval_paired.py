"""The release gates' paired statistics (issue 9): McNemar mid-p, Newcombe's paired CI, the paired bootstrap."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import stats as sps
from sklearn import metrics as skm

from shipml.errors import ConfigError
from shipml.evaluate.paired import (
    BOOTSTRAP_METRICS,
    PairedResult,
    _f1_stat,  # the vectorised per-resample formulas, checked against scikit-learn
    _regression_stat,
    bootstrap_p_value,
    mcnemar_midp,
    midp_value,
    newcombe_paired_interval,
    paired_bootstrap,
)

SKLEARN = {
    "r2": skm.r2_score,
    "mae": skm.mean_absolute_error,
    "mse": skm.mean_squared_error,
    "rmse": skm.root_mean_squared_error,
}

# ------------------------------------------------------------------------------------------ McNemar mid-p


@pytest.mark.parametrize(
    ("b", "c", "expected"),
    [
        (10, 2, 2 * (1 + 12 + 66 / 2) / 4096),  # n=12, m=2: P(X<2) = (1+12)/2^12, P(X=2) = 66/2^12 -> 92/4096
        (2, 10, 92 / 4096),  # symmetric in b and c
        (0, 0, 1.0),  # no discordant rows: nothing to test
        (5, 5, 1.0),  # a tie: the whole distribution
        (1, 0, 0.5),  # n=1, m=0: 2 * P(X=0)/2 = 1/2
        (3, 0, 0.125),  # n=3, m=0: 2 * (1/8)/2
        (4, 1, 2 * (1 + 5 / 2) / 32),  # n=5, m=1: P(X<1) = 1/32, P(X=1) = 5/32 -> 7/32
    ],
)
def test_midp_matches_hand_computed_binomials(b: int, c: int, expected: float) -> None:
    assert midp_value(b, c) == pytest.approx(expected, rel=1e-12, abs=0)


@pytest.mark.parametrize(
    ("b", "c"),
    [(10, 2), (37, 20), (0, 7), (120, 95), (4000, 4180), (10_000, 10_000 - 150), (30_000, 29_500), (400_000, 400_900)],
)
def test_midp_is_exact_two_sided_minus_the_point_mass(b: int, c: int) -> None:
    # for p = 1/2 the exact two-sided p is 2 P(X <= m); the mid-p counts only half of P(X = m) on each side
    n, m = b + c, min(b, c)
    reference = sps.binomtest(m, n, 0.5).pvalue - sps.binom.pmf(m, n, 0.5)
    assert midp_value(b, c) == pytest.approx(reference, rel=1e-9 if n <= 20_000 else 1e-7)  # log-gamma beyond


def test_midp_underflows_to_zero_only_where_the_truth_is_below_1e_300() -> None:
    assert midp_value(2000, 0) == 0.0  # 2^-2000
    assert 0 < midp_value(900, 0) < 1e-270


# ---------------------------------------------------------------------------------- Newcombe paired interval


def test_newcombe_interval_matches_fagerland_lydersen_laake_cavo_example() -> None:
    # Fagerland, Lydersen & Laake (Stat Med 2014; "Statistical Analysis of Contingency Tables", 2017,
    # ch. 8): complete response before/after consolidation therapy (Cavo et al. 2012), table 59 6 / 16 80:
    # Newcombe square-and-add, estimate -0.0621, 95% CI -0.1186 to -0.0046
    low, high = newcombe_paired_interval(59, 6, 16, 80, 0.95)
    assert (round(low, 4), round(high, 4)) == (-0.1186, -0.0046)


def test_newcombe_interval_matches_newcombe_1998_table_ii_example_a() -> None:
    # Newcombe (Stat Med 1998) Table II, example (a): 36 12 2 0, n = 50; method 10: 0.0569 to 0.3404
    low, high = newcombe_paired_interval(36, 12, 2, 0, 0.95)
    assert (round(low, 4), round(high, 4)) == (0.0569, 0.3404)


def test_newcombe_interval_flips_with_the_table_and_is_never_zero_width() -> None:
    low, high = newcombe_paired_interval(36, 12, 2, 0, 0.95)
    assert newcombe_paired_interval(36, 2, 12, 0, 0.95) == pytest.approx((-high, -low))
    low, high = newcombe_paired_interval(100, 0, 0, 0, 0.95)  # everything right for both
    assert low < 0 < high


# -------------------------------------------------------------------------------------------- mcnemar_midp


def _correct_pair(b: int, c: int, both: int, neither: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    cand = np.array([True] * b + [False] * c + [True] * both + [False] * neither)
    prod = np.array([False] * b + [True] * c + [True] * both + [False] * neither)
    order = np.random.default_rng(seed).permutation(cand.size)
    return cand[order], prod[order]


def test_mcnemar_counts_p_ci_and_verdicts() -> None:
    worse = mcnemar_midp(*_correct_pair(b=2, c=10, both=80, neither=8))
    assert (worse.only_candidate, worse.only_production, worse.both_correct, worse.both_wrong) == (2, 10, 80, 8)
    assert worse.p_value == pytest.approx(92 / 4096)
    assert worse.difference == pytest.approx(-0.08)
    assert (worse.candidate, worse.production) == pytest.approx((0.82, 0.90))
    assert worse.verdict == "worse"
    assert worse.ci_high < 0 and worse.ci_method == "newcombe_paired_score"
    assert (worse.ci_low, worse.ci_high) == pytest.approx(newcombe_paired_interval(80, 2, 10, 8, 0.95))

    better = mcnemar_midp(*_correct_pair(b=10, c=2, both=80, neither=8))
    assert better.verdict == "better" and better.difference > 0
    # same p, but a stricter alpha: not significant
    assert mcnemar_midp(*_correct_pair(b=10, c=2, both=80, neither=8), alpha=0.01).verdict == (
        "no significant difference"
    )


def test_mcnemar_identical_package_gets_p_one() -> None:
    correct = np.random.default_rng(1).random(594) < 0.9
    result = mcnemar_midp(correct, correct.copy())
    assert result.p_value == 1.0
    assert result.verdict == "no significant difference"
    assert result.difference == 0 and result.ci_low < 0 < result.ci_high


def test_mcnemar_refuses_predictions_and_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="correctness"):
        mcnemar_midp(np.array([0, 1, 2]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="length"):
        mcnemar_midp(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(ValueError, match="no rows"):
        mcnemar_midp(np.ones(0, bool), np.ones(0, bool))
    with pytest.raises(ValueError, match="alpha"):
        mcnemar_midp(np.ones(3, bool), np.ones(3, bool), alpha=1.5)


# ---------------------------------------------------------------------------------------- paired bootstrap


def _regression(seed: int = 0, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n) * 3
    return y, y + rng.normal(scale=0.5, size=n)


@pytest.mark.parametrize("metric", ["r2", "mae", "mse", "rmse"])
def test_bootstrap_flags_a_noisier_regressor_as_worse(metric: str) -> None:
    y, production = _regression()
    candidate = production + np.random.default_rng(7).normal(scale=1.5, size=y.size)
    result = paired_bootstrap(y, candidate, production, metric, n_resamples=1000, seed=0)
    assert result.verdict == "worse"
    assert result.ci_low > 0 or result.ci_high < 0  # the interval excludes 0
    assert result.p_value == pytest.approx(1 / 1001)  # every resample agreed: the floor, never 0
    flipped = paired_bootstrap(y, production, candidate, metric, n_resamples=1000, seed=0)
    assert flipped.verdict == "better"
    expected = SKLEARN[metric]
    assert result.candidate == pytest.approx(expected(y, candidate))
    assert result.difference == pytest.approx(expected(y, candidate) - expected(y, production))


@pytest.mark.parametrize("metric", BOOTSTRAP_METRICS)
def test_bootstrap_identical_package_gets_p_one(metric: str) -> None:
    y, pred = _regression()
    if metric in ("f1", "macro_f1"):
        y, pred = (y > 0).astype(int), (pred > 0).astype(int)
    result = paired_bootstrap(y, pred, pred.copy(), metric, n_resamples=300, seed=3)
    assert result.p_value == 1.0
    assert result.verdict == "no significant difference"
    assert result.difference == 0 and result.ci_low == result.ci_high == 0


def test_bootstrap_is_seeded() -> None:
    y, production = _regression()
    candidate = production + np.random.default_rng(2).normal(scale=0.3, size=y.size)
    first = paired_bootstrap(y, candidate, production, "mae", n_resamples=500, seed=11)
    assert paired_bootstrap(y, candidate, production, "mae", n_resamples=500, seed=11) == first
    other = paired_bootstrap(y, candidate, production, "mae", n_resamples=500, seed=12)
    assert (other.ci_low, other.ci_high) != (first.ci_low, first.ci_high)


def test_bootstrap_small_difference_is_not_significant() -> None:
    y, production = _regression()
    candidate = production.copy()
    candidate[:3] += 0.01  # three rows barely moved
    result = paired_bootstrap(y, candidate, production, "mse", n_resamples=1000, seed=0)
    assert result.verdict == "no significant difference" and result.p_value > 0.05
    assert result.ci_low <= 0 <= result.ci_high


def _labels(seed: int = 0, n: int = 600, n_classes: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    good = np.where(rng.random(n) < 0.9, y, rng.integers(0, n_classes, size=n))
    bad = np.where(rng.random(n) < 0.6, y, rng.integers(0, n_classes, size=n))
    return y, good, bad


def test_bootstrap_f1_point_estimates_match_sklearn_and_flag_the_worse_model() -> None:
    y, good, bad = _labels(n_classes=2)
    result = paired_bootstrap(y, bad, good, "f1", n_resamples=500, seed=0)
    assert result.candidate == pytest.approx(skm.f1_score(y, bad))
    assert result.production == pytest.approx(skm.f1_score(y, good))
    assert result.verdict == "worse" and result.ci_high < 0 and result.direction == "max"

    y3, good3, bad3 = _labels(n_classes=4)
    names = np.array(["cat", "dog", "eel", "fox"])
    macro = paired_bootstrap(names[y3], names[bad3], names[good3], "macro_f1", n_resamples=500, seed=0)
    assert macro.candidate == pytest.approx(skm.f1_score(y3, bad3, average="macro"))
    assert macro.production == pytest.approx(skm.f1_score(y3, good3, average="macro"))
    assert macro.verdict == "worse"


def test_bootstrap_binary_f1_needs_a_positive_label_unless_0_1() -> None:
    y, good, bad = _labels(n_classes=2)
    names = np.array(["ham", "spam"])
    with pytest.raises(ConfigError, match="positive"):
        paired_bootstrap(names[y], names[bad], names[good], "f1", n_resamples=10)
    result = paired_bootstrap(names[y], names[bad], names[good], "f1", n_resamples=10, positive="spam")
    assert result.candidate == pytest.approx(skm.f1_score(names[y], names[bad], pos_label="spam"))
    booleans = paired_bootstrap(y == 1, bad == 1, good == 1, "f1", n_resamples=10)
    assert booleans.candidate == pytest.approx(result.candidate)


def _resample(n: int, b: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.random.default_rng(seed).integers(0, n, size=(b, n))
    w = np.stack([np.bincount(row, minlength=n) for row in idx]).astype(np.float64)
    return idx, w


@pytest.mark.parametrize("metric", ["f1", "macro_f1"])
def test_resampled_f1_equals_sklearn_on_each_resample(metric: str) -> None:
    y, pred, _ = _labels(n=30, n_classes=3)
    y[0], pred[1] = 3, 3  # a rare class: one row of it, one prediction of it, so resamples often miss it
    idx, w = _resample(30, 40, seed=5)
    rare_missing = ~np.isin(idx, [0, 1]).any(axis=1)
    assert 0 < rare_missing.sum() < 40  # both kinds of resample occur
    got = _f1_stat(metric, y, pred, n_classes=4, positive=3)(idx, w)
    for row, value in zip(idx, got, strict=True):
        if metric == "f1":  # no positive row nor prediction: zero_division gives 0
            want = skm.f1_score(y[row] == 3, pred[row] == 3, zero_division=0)
        else:  # macro over the classes this resample has, as scikit-learn does
            want = skm.f1_score(y[row], pred[row], average="macro", zero_division=0)
        assert value == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("metric", ["r2", "mae", "mse", "rmse"])
def test_resampled_regression_metrics_equal_sklearn_on_each_resample(metric: str) -> None:
    y, pred = _regression(n=50)
    idx, w = _resample(50, 20, seed=9)
    got = _regression_stat(metric, y, pred)(idx, w)
    fn = SKLEARN[metric]
    for row, value in zip(idx, got, strict=True):
        assert value == pytest.approx(fn(y[row], pred[row]), rel=1e-9)


def test_bootstrap_p_value_rules() -> None:
    assert bootstrap_p_value(np.zeros(99)) == 1.0  # all ties
    assert bootstrap_p_value(np.full(99, 0.5)) == 1 / 100  # the floor, never 0
    assert bootstrap_p_value(np.r_[np.full(90, 1.0), np.full(10, -1.0)]) == pytest.approx(0.2)
    assert bootstrap_p_value(np.r_[np.full(90, -1.0), np.full(10, 1.0)]) == pytest.approx(0.2)


def test_bootstrap_refuses_bad_input() -> None:
    y, pred = _regression(n=10)
    with pytest.raises(ConfigError, match=r"accuracy.*choose one of"):
        paired_bootstrap(y, pred, pred, "accuracy")
    with pytest.raises(ValueError, match="length"):
        paired_bootstrap(y, pred[:-1], pred, "mae")
    with pytest.raises(ValueError, match="finite"):
        paired_bootstrap(y, np.r_[pred[:-1], np.nan], pred, "mae")
    with pytest.raises(ValueError, match="n_resamples"):
        paired_bootstrap(y, pred, pred, "mae", n_resamples=0)


# ------------------------------------------------------------------------------------------ PairedResult


def test_paired_result_is_frozen_and_json_able() -> None:
    y, production = _regression()
    results: list[PairedResult] = [
        paired_bootstrap(y, production + 1, production, "rmse", n_resamples=50),
        mcnemar_midp(*_correct_pair(b=3, c=1, both=10, neither=2)),
    ]
    for result in results:
        payload = json.loads(json.dumps(result.to_dict(), allow_nan=False))
        assert payload["verdict"] == result.verdict and payload["p_value"] == result.p_value
        with pytest.raises(AttributeError):
            result.p_value = 0.0  # type: ignore[misc]
    assert results[0].to_dict()["only_candidate"] is None and results[1].to_dict()["n_resamples"] is None


def test_to_dict_turns_non_finite_floats_into_null() -> None:
    result = mcnemar_midp(*_correct_pair(b=3, c=1, both=10, neither=2))
    undefined = dataclasses.replace(result, candidate=float("nan"), ci_high=float("inf"))
    payload = undefined.to_dict()
    assert payload["candidate"] is None and payload["ci_high"] is None
    json.dumps(payload, allow_nan=False)
