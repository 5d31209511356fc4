"""Drift: a window of live signals against a package's reference (reference.py), signal by signal.

PSI (population stability index) over the reference's decile bins (numeric signals) or categories, with
half-count smoothing so an empty bin does not give infinity; the two-sample Kolmogorov-Smirnov statistic
against the reference's 101 quantiles, with its asymptotic p-value (effective n = n·m/(n+m)), for numeric
signals. A signal *moved* when PSI >= 0.2 (the usual "significant shift"), or when PSI >= 0.1 and the KS
p-value < 0.001. Nothing is flagged on fewer than `min_rows` live rows: a handful of requests says nothing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["KS_ALPHA", "MIN_ROWS", "PSI_FLAG", "compare", "ks_test", "psi"]

MIN_ROWS = 100
PSI_FLAG = 0.2
PSI_WITH_KS = 0.1
KS_ALPHA = 0.001


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins (half-count smoothing)."""
    e = (np.asarray(expected, dtype=np.float64) + 0.5) / (np.sum(expected) + 0.5 * len(expected))
    a = (np.asarray(actual, dtype=np.float64) + 0.5) / (np.sum(actual) + 0.5 * len(actual))
    return float(np.sum((a - e) * np.log(a / e)))


def _kolmogorov_p(d: float, n_eff: float) -> float:
    """P(D > d) for the two-sample KS statistic, asymptotically (Kolmogorov's series)."""
    lam = (math.sqrt(n_eff) + 0.12 + 0.11 / math.sqrt(n_eff)) * d
    if lam < 1e-3:
        return 1.0
    total = sum(2 * (-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return float(min(1.0, max(0.0, total)))


def _reference_cdf(q: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference CDF given by its 101 quantiles, at `points`: F(x) and its left limit F(x-). A value that
    several quantiles share is a point mass (e.g. texts cut at max length): the CDF jumps there from the level
    of its first quantile to that of its last, and runs linearly between neighbouring values."""
    levels = np.linspace(0, 1, len(q))
    u, first = np.unique(q, return_index=True)
    last = len(q) - 1 - np.unique(q[::-1], return_index=True)[1]
    bottom, top = levels[first], levels[last]
    j = np.searchsorted(u, points, side="right") - 1  # the last reference value <= x
    at = (j >= 0) & (u[np.clip(j, 0, len(u) - 1)] == points)
    inner = (j >= 0) & (j < len(u) - 1)
    jj = np.clip(j, 0, max(0, len(u) - 2))
    span = np.where(inner, u[np.minimum(jj + 1, len(u) - 1)] - u[jj], 1.0)
    frac = np.where(inner, (points - u[jj]) / np.where(span > 0, span, 1.0), 0.0)
    between = top[jj] + frac * (bottom[np.minimum(jj + 1, len(u) - 1)] - top[jj])
    cdf = np.where(j < 0, 0.0, np.where(j >= len(u) - 1, 1.0, between))
    cdf = np.where(at, top[np.clip(j, 0, len(u) - 1)], cdf)
    left = np.where(at, bottom[np.clip(j, 0, len(u) - 1)], cdf)
    return cdf, left


def ks_test(quantiles: list[float], n_ref: int, values: np.ndarray) -> tuple[float, float]:
    """KS statistic and p-value of live `values` against a reference given by its 101 quantiles."""
    x = np.sort(values[np.isfinite(values)])
    if not len(x) or n_ref <= 0:
        return 0.0, 1.0
    q = np.asarray(quantiles, dtype=np.float64)
    points = np.unique(np.concatenate([x, q]))
    ref, ref_left = _reference_cdf(q, points)
    live = np.searchsorted(x, points, side="right") / len(x)
    live_left = np.searchsorted(x, points, side="left") / len(x)
    d = float(max(np.max(np.abs(live - ref)), np.max(np.abs(live_left - ref_left))))
    return d, _kolmogorov_p(d, len(x) * n_ref / (len(x) + n_ref))


def _numeric(summary: dict[str, Any], values: np.ndarray) -> dict[str, Any]:
    v = values[np.isfinite(values)]
    edges = np.asarray(summary["edges"], dtype=np.float64)
    live = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
    d, p = ks_test(summary["quantiles"], int(summary["n"]), v)
    quantiles = summary["quantiles"]
    return {"psi": psi(np.asarray(summary["counts"]), live), "ks": d, "ks_p": p,
            "reference_median": float(quantiles[50]), "live_median": float(np.median(v)) if len(v) else None}


def _categorical(summary: dict[str, Any], values: np.ndarray) -> dict[str, Any]:
    ref = summary["counts"]
    labels = list(ref)
    live_labels, live_counts = np.unique(values.astype(str), return_counts=True)
    live = dict(zip(live_labels.tolist(), live_counts.tolist(), strict=True))
    other = sum(c for k, c in live.items() if k not in ref)  # categories the reference never saw
    expected = np.array([ref[k] for k in labels] + [0])
    actual = np.array([live.get(k, 0) for k in labels] + [other])
    n = max(1, int(actual.sum()))
    top = sorted(live.items(), key=lambda kv: -kv[1])[:5]
    return {"psi": psi(expected, actual), "ks": None, "ks_p": None,
            "reference_share": {k: ref[k] / max(1, summary["n"]) for k in labels[:20]},
            "live_share": {k: c / n for k, c in top}}


def compare(reference: dict[str, Any] | None, window: dict[str, np.ndarray], *, min_rows: int = MIN_ROWS) -> dict:
    """Per signal: PSI, KS (numeric), medians or shares, `moved`; and `flag` (some signal moved) with the names.
    Without a reference, or below min_rows, nothing is flagged and the report says why."""
    rows = max((len(v) for v in window.values()), default=0)
    if not reference or not reference.get("signals"):
        return {"status": "no reference", "rows": rows, "flag": False, "moved": [], "signals": {}}
    out: dict[str, Any] = {}
    for name, summary in reference["signals"].items():
        values = window.get(name)
        if values is None or not len(values):
            continue
        got = _numeric(summary, values) if summary["kind"] == "numeric" else _categorical(summary, values)
        got["moved"] = bool(len(values) >= min_rows and (got["psi"] >= PSI_FLAG or (
            got["psi"] >= PSI_WITH_KS and got["ks_p"] is not None and got["ks_p"] < KS_ALPHA)))
        got["rows"] = len(values)
        out[name] = got
    moved = sorted(n for n, g in out.items() if g["moved"])
    status = "too few rows" if rows < min_rows else ("drift" if moved else "ok")
    return {"status": status, "rows": rows, "min_rows": min_rows, "flag": bool(moved), "moved": moved,
            "signals": out}
