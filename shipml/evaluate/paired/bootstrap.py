"""Any metric compared by a paired bootstrap: both models scored on the same resampled rows (the package
docstring, `shipml.evaluate.paired`, gives the references)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn import metrics as skm

from shipml.core.metric_names import metric_direction
from shipml.errors import ConfigError
from shipml.evaluate.bootstrap import bootstrap, interval
from shipml.evaluate.paired.result import PairedResult, _check_levels, _verdict

__all__ = ["BOOTSTRAP_METRICS", "bootstrap_p_value", "paired_bootstrap"]

# metrics the paired bootstrap knows; which way each is better comes from core.metric_names
BOOTSTRAP_METRICS: tuple[str, ...] = ("r2", "mae", "mse", "rmse", "f1", "macro_f1")
_REGRESSION = frozenset({"r2", "mae", "mse", "rmse"})

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
