"""Decision thresholds for binary classifiers, tuned on the validation split, and the rates they give.

Argmax treats a false positive and a false negative as equally bad. A spam filter does not: losing a
real email costs far more than letting a spam through, so it flags a message only when p(spam) >= t,
with t tuned on validation either for the best F1 of the positive class or for a cap on the share of
negatives flagged (the false-positive rate). The rule everywhere is `positive iff p_pos >= threshold`.

Thresholds are picked between neighbouring distinct validation scores, never on a score itself: a
threshold equal to some validation row's score decides that row by a hair, and unseen rows scoring
a whisker either side fall arbitrarily; the midpoint leaves equal room on both sides. The points
returned split float32 scores the same way whether compared in float32 or float64, because NumPy
compares a float32 probability array against a Python float *in float32* (NEP 50): a float64 midpoint
just above a saturated 1.0 would round back to 1.0 and flag what it was meant to exclude.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import numpy as np
from sklearn.metrics import roc_curve

__all__ = ["FALLBACK_THRESHOLD", "ThresholdWarning", "binary_rates", "tune_threshold"]

FALLBACK_THRESHOLD = 0.5  # what tune_threshold returns when validation cannot tune anything
_ABOVE_ONE = 2.0**-10  # room above a saturated score of exactly 1.0 (float32-exact: 1 + 2^-11 sits inside)


class ThresholdWarning(UserWarning):
    """Validation could not tune the threshold as asked; the message says what was returned instead.

    Raised as a warning, not an error: a run should still finish and report, with the note shown to
    the user (run.py can record the message in metrics.json via `warnings.catch_warnings`).
    """


def _check_binary(y_true: Any, p_pos: Any) -> tuple[np.ndarray, np.ndarray]:
    """(y as bool, p as float64) after checking both are 1-D, equally long, y in {0, 1}, p finite."""
    y = np.asarray(y_true)
    p = np.asarray(p_pos, dtype=np.float64)
    if y.ndim != 1 or p.shape != y.shape:
        raise ValueError(f"y_true and p_pos must be (N,) arrays of equal length, got {y.shape} and {p.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold 0 (negative) or 1 (positive)")
    if not np.isfinite(p).all():
        raise ValueError("p_pos must be finite")
    return y.astype(bool), p


def binary_rates(y_true: Any, p_pos: Any, threshold: float) -> dict[str, float | int]:
    """Counts and rates of the decision `p_pos >= threshold` against `y_true` (1 = positive).

    precision, recall, F1 and FPR are 0.0 where their denominator is 0 (scikit-learn's zero_division=0),
    so the dict is always JSON-able: {"precision", "recall", "f1", "fpr", "tp", "fp", "tn", "fn"}.
    """
    y, p = _check_binary(y_true, p_pos)
    flagged = p >= float(threshold)
    tp = int(np.count_nonzero(flagged & y))
    fp = int(np.count_nonzero(flagged & ~y))
    fn = int(np.count_nonzero(~flagged & y))
    tn = int(np.count_nonzero(~flagged & ~y))

    def ratio(a: int, b: int) -> float:
        return a / b if b else 0.0

    return {
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "fpr": ratio(fp, fp + tn),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def _between(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Per pair, a t with lower < t <= upper at the midpoint, that splits float32 scores alike.

    The float64 midpoint when its float32 rounding also lies inside (so comparing in either precision
    gives the same split, see the module docstring, and 0.35 stays 0.35 in metrics.json); else the
    float32 midpoint; else `upper` itself (the bounds are adjacent in float32: no room between them).
    """
    mid = (lower + upper) / 2
    mid32 = mid.astype(np.float32).astype(np.float64)
    inside32 = (mid32 > lower) & (mid32 <= upper)
    inside64 = (mid > lower) & (mid <= upper)
    return np.where(inside32 & inside64, mid, np.where(inside32, mid32, upper))


def _operating_points(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct way a threshold can split the scores: (threshold, tp, fp), thresholds descending.

    Point 0 flags nothing (a threshold above every score; above 1 only if a score is exactly 1);
    point j flags the scores >= the j-th highest distinct score, with the threshold halfway down to the
    next lower score (0 below the lowest, so an all-positive threshold is 0 only if a score is 0).
    """
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)  # thr[0] = inf, then distinct scores descending
    scores = thr[1:]
    tp, fp = np.rint(tpr * n_pos).astype(np.int64), np.rint(fpr * n_neg).astype(np.int64)
    lower = np.append(scores[1:], 0.0)
    top = scores[0]
    ceiling = 1.0 if top < 1.0 else top + _ABOVE_ONE
    thresholds = np.concatenate([_between(np.array([top]), np.array([ceiling])), _between(lower, scores)])
    return thresholds, tp, fp


def _fallback(why: str) -> float:
    warnings.warn(f"{why}; using the threshold {FALLBACK_THRESHOLD}", ThresholdWarning, stacklevel=3)
    return FALLBACK_THRESHOLD


def tune_threshold(
    y_true: Any,
    p_pos: Any,
    strategy: Literal["max_f1", "max_fpr"],
    *,
    max_fpr: float = 0.001,
) -> float:
    """The decision threshold on p(positive) that validation rows (y_true: 1 = positive) support best.

    max_f1: the threshold with the highest F1 of the positive class. When several tie, the middle one
    of the tied thresholds in ascending order is taken (the higher of the two middle ones for an even
    count): a plateau is cut in its middle, and between two isolated optima the higher threshold
    wins, the one with fewer false positives.
    max_fpr: the lowest threshold whose false-positive rate (share of negatives with p_pos >= t) is at
    most `max_fpr` — the most recall the cap allows. With few negatives the cap usually means "no
    false positive at all" (0.001 x 300 negatives < 1), i.e. a threshold just above the highest-scoring
    negative. If only flagging nothing meets the cap, that threshold is returned with a
    ThresholdWarning.

    Degenerate validation data (empty, or no positive, or no negative row) cannot tune anything: the
    result is FALLBACK_THRESHOLD (0.5) and a ThresholdWarning says why.
    """
    if strategy not in ("max_f1", "max_fpr"):
        raise ValueError(f"strategy must be 'max_f1' or 'max_fpr', got {strategy!r}")
    if not 0.0 <= max_fpr < 1.0:
        raise ValueError(f"max_fpr must be in [0, 1), got {max_fpr}")
    y, p = _check_binary(y_true, p_pos)
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise ValueError("p_pos must be probabilities in [0, 1]")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        missing = "no rows" if y.size == 0 else ("no positive row" if n_pos == 0 else "no negative row")
        return _fallback(f"the validation split has {missing}, so the threshold cannot be tuned")
    thresholds, tp, fp = _operating_points(y, p)
    if strategy == "max_fpr":
        allowed = math.floor(max_fpr * n_neg + 1e-9)  # false positives the cap permits on these negatives
        best = int(np.flatnonzero(fp <= allowed).max())  # fp grows as the threshold falls: the lowest one
        if best == 0:
            warnings.warn(
                f"only flagging nothing keeps the validation FPR <= {max_fpr:g} (negatives score highest); "
                f"threshold {float(thresholds[0]):.6g}",
                ThresholdWarning,
                stacklevel=2,
            )
        return float(thresholds[best])
    f1 = 2 * tp / (tp + fp + n_pos)  # = 2TP / (2TP + FP + FN), since FN = P - TP
    tied = np.flatnonzero(f1 >= f1.max() - 1e-12)[::-1]  # ascending threshold order
    return float(thresholds[tied[len(tied) // 2]])
