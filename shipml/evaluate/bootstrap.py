"""Percentile bootstrap over blocks of resamples, for statistics vectorised across resamples.

Used for every metric that is not a plain proportion (F1, AUC, log loss, ECE, regression errors);
proportions (accuracy, per-class precision and recall) get Wilson intervals from `core/proportion.py`.

A statistic receives a block of resamples at once, both as row indices (B, N) and as how often
each row was drawn (B, N), and returns one value per resample. That lets means become one
matrix-vector product and counts one bincount, instead of a Python loop over 1000 resamples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = ["bootstrap", "interval"]

_CHUNK = 200  # resamples per block: bounds the (chunk, N) matrices to a few MB

Statistics = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


def _resamples(n: int, n_bootstrap: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of bootstrap index matrices, each (chunk, n), drawn from one seeded generator."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_bootstrap, _CHUNK):
        yield rng.integers(0, n, size=(min(_CHUNK, n_bootstrap - start), n))


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each row appears in each resample: (B, n) float64 weights from (B, n) indices."""
    b = idx.shape[0]
    flat = (idx + (np.arange(b) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def bootstrap(n: int, n_bootstrap: int, seed: int, stats: Statistics) -> dict[str, np.ndarray] | None:
    """Run `stats(idx, counts)` over all resample blocks; each statistic's (n_bootstrap,) values.

    None when n_bootstrap is 0 (intervals switched off).
    """
    if n_bootstrap <= 0:
        return None
    parts: dict[str, list[np.ndarray]] = {}
    for idx in _resamples(n, n_bootstrap, seed):
        for key, values in stats(idx, _counts(idx, n)).items():
            parts.setdefault(key, []).append(values)
    return {key: np.concatenate(v) for key, v in parts.items()}


def interval(value: float, samples: np.ndarray | None, confidence: float) -> dict[str, Any]:
    """{"value", "ci_low", "ci_high", "ci_method"}: the percentile interval, widened to contain the estimate.

    Biased statistics (ECE, extreme AUCs) can have a bootstrap distribution that sits entirely on
    one side of the estimate; a printed "0.012 [0.015, 0.031]" reads as a bug, so the interval is
    stretched to include the value it accompanies. NaN samples (degenerate resamples) are skipped.
    `ci_method` is "bootstrap", or None with the bounds when there is no interval. A zero-width
    result is kept as computed (every resample agreed): the report says it shows no spread rather
    than certainty, and proportions, where that happens at 0% and 100%, use `core/proportion.py` instead.
    """
    if samples is None:
        return {"value": float(value), "ci_low": None, "ci_high": None, "ci_method": None}
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return {"value": float(value), "ci_low": None, "ci_high": None, "ci_method": None}
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(finite, [100 * alpha, 100 * (1 - alpha)])
    low, high = float(min(low, value)), float(max(high, value))
    return {"value": float(value), "ci_low": low, "ci_high": high, "ci_method": "bootstrap"}
