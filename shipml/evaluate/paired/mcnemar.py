"""Per-row correctness compared with the exact McNemar mid-p test and Newcombe's paired interval (the
package docstring, `shipml.evaluate.paired`, gives the references)."""

from __future__ import annotations

import math

import numpy as np

from shipml.core.proportion import wilson_interval
from shipml.evaluate.paired.result import PairedResult, _check_levels, _verdict

__all__ = ["mcnemar_midp", "midp_value", "newcombe_paired_interval"]


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
