"""Paired comparisons of a candidate model with production on the same rows: the release gates' statistics.

A release gate asks one question: on the frozen holdout, is the candidate worse than what is live now by
more than noise? Both models score the *same* rows, so the comparison is paired, which is far more
sensitive than comparing two independent accuracies: rows both models get right (or both wrong) carry no
information about which is better, and only the discordant rows count.

- `mcnemar_midp`: per-row correctness (classification accuracy). The exact McNemar test, mid-p version
  (Lancaster 1961; Fagerland, Lydersen & Laake, "The McNemar test for binary matched-pairs data: mid-p and
  asymptotic are better than exact conditional", BMC Med Res Methodol 13:91, 2013): the exact conditional
  test is conservative (its real size is often half the nominal alpha), the mid-p keeps close to nominal
  while staying exact-binomial. The interval of the accuracy difference is Newcombe's paired score interval
  (Newcombe, "Improved confidence intervals for the difference between binomial proportions based on
  paired data", Stat Med 17:2635-2650, 1998, method 10; the "Newcombe square-and-add" interval recommended
  by Fagerland, Lydersen & Laake, Stat Med 33:2850-2875, 2014): it stays inside [-1, 1], is never
  zero-width, and needs only Wilson intervals (`core/proportion.py`).
- `paired_bootstrap`: any of r2 / mae / mse / rmse / f1 (binary) / macro_f1. Rows are resampled once per
  resample and both models are scored on the same resampled rows (Efron & Tibshirani 1993, ch. 16;
  Koehn, "Statistical significance tests for machine translation evaluation", EMNLP 2004), so the
  correlation between the two models' errors is kept. Resampled metrics are computed in bulk from
  resample count matrices (as in `metrics.py`), not by calling scikit-learn per resample.

Both return a `PairedResult`, whose `to_dict()` is what the catalog's event log stores. A package compared
with itself gets p = 1 and "no significant difference" from both.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from sklearn import metrics as skm

from shipml.core.metric_names import metric_direction
from shipml.core.proportion import wilson_interval
from shipml.errors import ConfigError
from shipml.evaluate.bootstrap import bootstrap, interval

__all__ = [
    "BOOTSTRAP_METRICS",
    "VERDICTS",
    "PairedResult",
    "bootstrap_p_value",
    "mcnemar_midp",
    "midp_value",
    "newcombe_paired_interval",
    "paired_bootstrap",
]

Verdict = Literal["worse", "better", "no significant difference"]
VERDICTS: tuple[str, ...] = ("worse", "better", "no significant difference")
# metrics the paired bootstrap knows; which way each is better comes from core.metric_names
BOOTSTRAP_METRICS: tuple[str, ...] = ("r2", "mae", "mse", "rmse", "f1", "macro_f1")
_REGRESSION = frozenset({"r2", "mae", "mse", "rmse"})


@dataclasses.dataclass(frozen=True)
class PairedResult:
    """One paired comparison, candidate against production, as the release gate reports and logs it.

    `difference` is candidate minus production in the metric's own units; `direction` ("max" or "min")
    says which sign is an improvement, and `verdict` has already applied it. The counts are McNemar's
    2x2 table (None for the bootstrap); `n_resamples` and `seed` are the bootstrap's (None for McNemar).
    """

    test: Literal["mcnemar_midp", "paired_bootstrap"]
    metric: str
    direction: Literal["max", "min"]
    n: int
    candidate: float
    production: float
    difference: float
    ci_low: float
    ci_high: float
    ci_method: str
    confidence: float
    p_value: float
    alpha: float
    verdict: Verdict
    only_candidate: int | None = None
    only_production: int | None = None
    both_correct: int | None = None
    both_wrong: int | None = None
    n_resamples: int | None = None
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (non-finite floats become None), so `json.dumps(allow_nan=False)` works."""
        out = dataclasses.asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def _check_levels(alpha: float, confidence: float | None) -> float:
    """Validate alpha and return the confidence, 1 - alpha unless given (so the CI agrees with the test)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    confidence = 1.0 - alpha if confidence is None else float(confidence)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return confidence


def _verdict(p_value: float, alpha: float, difference: float, direction: str) -> Verdict:
    """Better or worse only when p < alpha, by the sign of the difference read with the metric's direction."""
    if p_value >= alpha or difference == 0:
        return "no significant difference"
    improved = difference > 0 if direction == "max" else difference < 0
    return "better" if improved else "worse"


# ---------------------------------------------------------------------------------------------- McNemar

_EXACT_UP_TO = 20_000  # discordant rows up to which P(X = m) is computed in exact integers


def midp_value(b: int, c: int) -> float:
    """Two-sided McNemar mid-p: 2 * (P(X < m) + P(X = m) / 2), X ~ Binomial(b + c, 1/2), m = min(b, c).

    b == c (including b = c = 0, no discordant rows) gives exactly 1: by symmetry P(X < m) = P(X > m),
    so the sum is the whole distribution. Otherwise P(X = m) is C(n, m) / 2^n in exact integers (Python's
    int division rounds correctly) up to n = 20000 discordant rows, and through log-gamma beyond (exact
    big-integer binomials take seconds there; log-gamma keeps about 8 significant digits at n = 10^6).
    The lower tail is built from it with the ratios P(X = k-1) / P(X = k) = k / (n - k + 1), vectorised.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    if b == c:
        return 1.0
    n, m = b + c, min(b, c)
    if n <= _EXACT_UP_TO:
        at_m = math.comb(n, m) / (1 << n)
    else:
        at_m = math.exp(math.lgamma(n + 1) - math.lgamma(m + 1) - math.lgamma(n - m + 1) - n * math.log(2))
    k = np.arange(m, 0, -1, dtype=np.float64)  # m, m-1, ..., 1
    below = float(np.cumprod(k / (n - k + 1)).sum()) if m > 0 else 0.0  # P(X < m) / P(X = m)
    return min(1.0, at_m * (2.0 * below + 1.0))


def newcombe_paired_interval(a: int, b: int, c: int, d: int, confidence: float) -> tuple[float, float]:
    """CI of p1 - p2 = (b - c) / n for paired proportions: Newcombe (1998) method 10, square-and-add.

    a: both succeed, b: only 1 succeeds, c: only 2 succeeds, d: neither. With (l1, u1), (l2, u2) the
    Wilson intervals of p1 = (a + b) / n and p2 = (a + c) / n:
        L = D - sqrt((p1 - l1)^2 - 2 phi (p1 - l1)(u2 - p2) + (u2 - p2)^2)
        U = D + sqrt((p2 - l2)^2 - 2 phi (p2 - l2)(u1 - p1) + (u1 - p1)^2)
    where phi estimates the correlation of the two marginals with Newcombe's correction: with
    A = ad - bc, phi = (A - n/2) / sqrt(product of margins) if A > n/2, 0 if 0 <= A <= n/2, A / sqrt(...)
    if A < 0, and 0 if any margin is empty. This is the form of Altman et al., "Statistics with
    Confidence" (2nd ed., 2000, ch. 6) and of Fagerland, Lydersen & Laake (Stat Med 2014), whose worked
    example (Cavo et al. 2012: 59, 6, 16, 80) gives -0.0621 (-0.1186 to -0.0046); the tests check it.
    """
    n = a + b + c + d
    if min(a, b, c, d) < 0 or n == 0:
        raise ValueError(f"need non-negative counts with a positive total, got {(a, b, c, d)}")
    p1, p2 = (a + b) / n, (a + c) / n
    first, second = wilson_interval(a + b, n, confidence), wilson_interval(a + c, n, confidence)
    assert first is not None and second is not None  # n > 0
    (l1, u1), (l2, u2) = first, second
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    if margins == 0 or 0 <= cross <= n / 2:
        phi = 0.0
    else:
        phi = (cross - n / 2 if cross > n / 2 else cross) / math.sqrt(margins)
    diff = p1 - p2
    low = diff - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = diff + math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    return max(-1.0, low), min(1.0, high)


def _correctness(values: np.ndarray, name: str) -> np.ndarray:
    """A 1-D boolean array from bools or 0/1 numbers; anything else is a caller passing predictions."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D per-row correctness, got shape {arr.shape}")
    if arr.dtype != np.bool_:
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must hold per-row correctness (bool or 0/1), not predictions or labels")
        arr = arr.astype(bool)
    return arr


def mcnemar_midp(
    candidate_correct: np.ndarray,
    production_correct: np.ndarray,
    *,
    alpha: float = 0.05,
    confidence: float | None = None,
) -> PairedResult:
    """Exact McNemar mid-p test of candidate vs production accuracy on the same rows, with the paired CI.

    b = rows only the candidate gets right, c = rows only production gets right; under "equally accurate"
    each discordant row is a fair coin, so b ~ Binomial(b + c, 1/2) (see `midp_value`). The CI of the
    accuracy difference (candidate - production) is `newcombe_paired_interval` at `confidence`
    (default 1 - alpha). The verdict comes from the p-value; the mid-p test and the score interval are
    different procedures, so at the margin (p close to alpha) the CI may just touch 0 when p < alpha.
    """
    confidence = _check_levels(alpha, confidence)
    cand = _correctness(candidate_correct, "candidate_correct")
    prod = _correctness(production_correct, "production_correct")
    if cand.shape != prod.shape:
        raise ValueError(f"candidate and production differ in length: {cand.shape[0]} vs {prod.shape[0]}")
    n = int(cand.shape[0])
    if n == 0:
        raise ValueError("no rows to compare")
    both = int(np.sum(cand & prod))
    b = int(np.sum(cand & ~prod))
    c = int(np.sum(~cand & prod))
    neither = n - both - b - c
    p_value = midp_value(b, c)
    low, high = newcombe_paired_interval(both, b, c, neither, confidence)
    difference = (b - c) / n
    return PairedResult(
        test="mcnemar_midp",
        metric="accuracy",
        direction="max",
        n=n,
        candidate=(both + b) / n,
        production=(both + c) / n,
        difference=difference,
        ci_low=low,
        ci_high=high,
        ci_method="newcombe_paired_score",
        confidence=confidence,
        p_value=p_value,
        alpha=float(alpha),
        verdict=_verdict(p_value, alpha, difference, "max"),
        only_candidate=b,
        only_production=c,
        both_correct=both,
        both_wrong=neither,
    )


# -------------------------------------------------------------------------------------------- bootstrap

Resampled = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (idx (B, N), counts (B, N)) -> (B,)


def _regression_stat(metric: str, y: np.ndarray, pred: np.ndarray) -> Resampled:
    """Per-resample r2/mae/mse/rmse from weighted sums: row i counted w[b, i] times in resample b."""
    n = y.shape[0]
    sq, ab = (y - pred) ** 2, np.abs(y - pred)
    yc = y - y.mean()  # centred once, so per-resample sums of squares do not cancel catastrophically

    def stat(idx: np.ndarray, w: np.ndarray) -> np.ndarray:
        if metric == "mae":
            return w @ ab / n
        mse = w @ sq / n
        if metric == "mse":
            return mse
        if metric == "rmse":
            return np.sqrt(mse)
        shift = w @ yc / n
        raw = w @ (yc * yc)
        ss_tot = raw - n * shift * shift  # about each resample's own mean
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(ss_tot > 1e-9 * raw, 1 - n * mse / ss_tot, np.nan)  # constant target: undefined

    return stat


def _f1_stat(metric: str, y: np.ndarray, pred: np.ndarray, n_classes: int, positive: int) -> Resampled:
    """Per-resample F1 from per-class counts (tp, predicted, true), zero_division=0 like scikit-learn.

    Binary: F1 of the `positive` code. Macro: the mean over the classes present in the resample (in its
    labels or predictions), which is what `f1_score(average="macro")` does on that resample's rows.
    """
    hit = (y == pred).astype(np.float64)

    def per_class(idx: np.ndarray, codes: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        rows = idx.shape[0]
        flat = (codes[idx] + (np.arange(rows) * n_classes)[:, None]).ravel()
        wts = None if weights is None else weights[idx].ravel()
        return np.bincount(flat, weights=wts, minlength=rows * n_classes).reshape(rows, n_classes)

    def stat(idx: np.ndarray, w: np.ndarray) -> np.ndarray:
        if metric == "f1":
            is_pos = (y == positive).astype(np.float64)
            tp = w @ (hit * is_pos)
            denom = w @ is_pos + w @ (pred == positive).astype(np.float64)  # 2tp + fp + fn
            return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
        tp, true, predicted = per_class(idx, y, hit), per_class(idx, y, None), per_class(idx, pred, None)
        denom = true + predicted
        present = denom > 0
        f1 = np.where(present, 2 * tp / np.maximum(denom, 1), 0.0)
        return f1.sum(1) / present.sum(1)

    return stat


def _encode_labels(
    y: np.ndarray, cand: np.ndarray, prod: np.ndarray, metric: str, positive: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Integer codes over the labels seen anywhere, the class count, and the positive class's code."""
    classes, codes = np.unique(np.concatenate([y, cand, prod]), return_inverse=True)
    n = y.shape[0]
    pos_code = -1
    if metric == "f1":
        if positive is None:
            if not set(classes.tolist()) <= {0, 1}:
                raise ConfigError(
                    f"binary f1 needs the positive class: labels are {classes.tolist()[:10]}; pass positive=<label>"
                )
            positive = 1
        hits = np.flatnonzero(classes == positive)
        pos_code = int(hits[0]) if hits.size else len(classes)  # absent everywhere: F1 is 0 for both
    return codes[:n], codes[n : 2 * n], codes[2 * n :], len(classes), pos_code


def _point(metric: str, y: np.ndarray, pred: np.ndarray, positive_code: int) -> float:
    """The full-data metric from scikit-learn (the resampled ones reproduce its formulas)."""
    if metric == "r2":
        return float(skm.r2_score(y, pred))
    if metric == "mae":
        return float(skm.mean_absolute_error(y, pred))
    if metric == "mse":
        return float(skm.mean_squared_error(y, pred))
    if metric == "rmse":
        return float(skm.root_mean_squared_error(y, pred))
    if metric == "f1":
        return float(skm.f1_score(y == positive_code, pred == positive_code, zero_division=0))
    return float(skm.f1_score(y, pred, average="macro", zero_division=0))


def bootstrap_p_value(differences: np.ndarray) -> float:
    """Two-sided bootstrap p of "no difference": twice the share of resampled differences on the far side
    of 0 (ties at 0 count as the far side), capped at 1 and floored at 1 / (B + 1).

    It inverts the percentile interval: p < alpha exactly when 0 lies outside the central (1 - alpha)
    range of the resampled differences (up to percentile interpolation). The floor is there because B
    resamples cannot show a probability below about 1/B: a gate must never log p = 0.
    """
    b = differences.shape[0]
    far = min(int(np.sum(differences <= 0)), int(np.sum(differences >= 0)))
    return max(1.0 / (b + 1), min(1.0, 2.0 * far / b))


def paired_bootstrap(
    y: np.ndarray,
    pred_candidate: np.ndarray,
    pred_production: np.ndarray,
    metric: str,
    n_resamples: int = 2000,
    confidence: float | None = None,
    seed: int = 0,
    *,
    alpha: float = 0.05,
    positive: Any = None,
) -> PairedResult:
    """Paired bootstrap of metric(candidate) - metric(production) over the same resampled rows.

    metric: one of BOOTSTRAP_METRICS. "f1" is the binary F1 of `positive` (default 1, for 0/1 or bool
    labels); "macro_f1" the unweighted mean over classes. The CI is the percentile interval of the
    resampled differences at `confidence` (default 1 - alpha); the p-value is `bootstrap_p_value`. Resamples
    where the metric is undefined (R² on a resample with a constant target) are dropped from both.
    Seeded: the same inputs and seed give the same result.
    """
    if metric not in BOOTSTRAP_METRICS:
        raise ConfigError(f"unknown paired-bootstrap metric {metric!r}; choose one of {', '.join(BOOTSTRAP_METRICS)}")
    confidence = _check_levels(alpha, confidence)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    arrays = [np.asarray(a).ravel() for a in (y, pred_candidate, pred_production)]
    if len({a.shape[0] for a in arrays}) != 1:
        raise ValueError(f"y and the two predictions differ in length: {[a.shape[0] for a in arrays]}")
    n = arrays[0].shape[0]
    if n < 2:
        raise ValueError(f"a paired bootstrap needs at least 2 rows, got {n}")
    if metric in _REGRESSION:
        yv, cand, prod = (a.astype(np.float64) for a in arrays)
        if not all(np.isfinite(a).all() for a in (yv, cand, prod)):
            raise ValueError("y and the predictions must be finite")
        stat_c, stat_p = _regression_stat(metric, yv, cand), _regression_stat(metric, yv, prod)
        pos = -1
    else:
        yv, cand, prod, n_classes, pos = _encode_labels(*arrays, metric, positive)
        stat_c, stat_p = _f1_stat(metric, yv, cand, n_classes, pos), _f1_stat(metric, yv, prod, n_classes, pos)

    def stats(idx: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
        return {"diff": stat_c(idx, w) - stat_p(idx, w)}

    boot = bootstrap(n, n_resamples, seed, stats)
    assert boot is not None  # n_resamples >= 1
    finite = boot["diff"][np.isfinite(boot["diff"])]
    if finite.size == 0:
        raise ValueError(f"{metric} is undefined on every resample (is the target constant?)")
    candidate, production = _point(metric, yv, cand, pos), _point(metric, yv, prod, pos)
    difference = candidate - production
    ci = interval(difference, finite, confidence)
    p_value = bootstrap_p_value(finite)
    direction = metric_direction(metric)
    return PairedResult(
        test="paired_bootstrap",
        metric=metric,
        direction=direction,
        n=int(n),
        candidate=candidate,
        production=production,
        difference=difference,
        ci_low=float(ci["ci_low"]),
        ci_high=float(ci["ci_high"]),
        ci_method="percentile_bootstrap",
        confidence=confidence,
        p_value=p_value,
        alpha=float(alpha),
        verdict=_verdict(p_value, alpha, difference, direction),
        n_resamples=int(n_resamples),
        seed=int(seed),
    )
