"""Test-set metrics with confidence intervals, as JSON-able dicts.

A single number on a few hundred test rows hides how much it would move on another draw of the
data, so every scalar comes with an interval, and its dict names the method in "ci_method":

- "wilson" for proportions, k hits out of n tries: accuracy (n = rows) and, per class, precision
  (n = rows predicted as the class) and recall (n = rows of the class). The percentile bootstrap
  collapses on these at 0% and 100% ("1 [1, 1]"); the Wilson interval stays honest there (see
  core/proportion.py for why Wilson over Clopper-Pearson). It is closed form, so it is there even when
  bootstrap resampling is switched off (n_bootstrap=0).
- "bootstrap" for everything else (F1, macro averages, log loss, AUC, ECE, regression metrics): a
  percentile bootstrap over the test rows. The point estimates come from scikit-learn; the resampled
  ones are computed in bulk from resample count/index matrices (the same formulas, vectorised),
  because calling scikit-learn 1000 times per metric takes tens of seconds.

Macro precision and recall average several classes' proportions, each over its own n, so they are
not one k-of-n proportion and keep the bootstrap.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm

from shipml.core.metric_names import HEADLINE, metric_direction
from shipml.core.proportion import proportion_interval
from shipml.evaluate.bootstrap import bootstrap, interval

__all__ = [
    "ECE_BINS",
    "HEADLINE",
    "classification_metrics",
    "expected_calibration_error",
    "metric_direction",
    "regression_metrics",
    "reliability_bins",
]

ECE_BINS = 15


# -------------------------------------------------------------------------------------- classification


def _check_classification(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes and ranges; returns y as int64 and proba as float64 (an exact, tie-keeping cast)."""
    y = np.asarray(y_true)
    p = np.asarray(proba, dtype=np.float64)
    n_classes = len(classes)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"y_true must be a non-empty (N,) array, got shape {y.shape}")
    if p.ndim != 2 or p.shape[0] != y.shape[0] or p.shape[1] != n_classes:
        raise ValueError(f"proba must be (N, {n_classes}) for N={y.shape[0]} labels, got {p.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"y_true must hold class indices in [0, {n_classes}), got {y.dtype} {y.min()}..{y.max()}")
    if not np.all(np.isfinite(p)) or p.min() < 0:
        raise ValueError("proba must be finite and non-negative")
    worst = float(np.abs(p.sum(axis=1) - 1).max())
    if worst > 1e-2:  # loose enough for bf16 softmax outputs, tight enough to catch logits or scores
        raise ValueError(f"proba rows must sum to 1 (probabilities, not logits); a row is off by {worst:.3g}")
    return y.astype(np.int64), p


def _check_labels(labels: np.ndarray, n: int, n_classes: int) -> np.ndarray:
    """Predicted class indices given in place of the argmax: (N,) integers in [0, C)."""
    pred = np.asarray(labels)
    if pred.shape != (n,) or not np.issubdtype(pred.dtype, np.integer):
        raise ValueError(f"labels must be ({n},) integer class indices, got {pred.dtype} {pred.shape}")
    if n and (pred.min() < 0 or pred.max() >= n_classes):
        raise ValueError(f"labels must hold class indices in [0, {n_classes}), got {pred.min()}..{pred.max()}")
    return pred.astype(np.int64)


def _top_label_bins(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence and its equal-width bin index: bins are (k/15, (k+1)/15], 0 goes to bin 0."""
    conf = p.max(axis=1)
    bins = np.clip(np.ceil(conf * ECE_BINS).astype(np.int64) - 1, 0, ECE_BINS - 1)
    return conf, bins


def reliability_bins(y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per top-label confidence bin (15 equal-width): row count, mean confidence, accuracy.

    Empty bins hold NaN confidence/accuracy. Shared by the ECE and the reliability diagram so the
    plot shows exactly what the number summarises.
    """
    conf, bins = _top_label_bins(proba)
    correct = proba.argmax(axis=1) == y_true
    counts = np.bincount(bins, minlength=ECE_BINS).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_conf = np.bincount(bins, weights=conf, minlength=ECE_BINS) / counts
        accuracy = np.bincount(bins, weights=correct, minlength=ECE_BINS) / counts
    return counts, mean_conf, accuracy


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Top-label ECE: sum over bins of |accuracy - mean confidence| weighted by the bin's share of rows."""
    counts, mean_conf, accuracy = reliability_bins(y_true, proba)
    filled = counts > 0
    return float((counts[filled] * np.abs(accuracy[filled] - mean_conf[filled])).sum() / counts.sum())


def _macro_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Macro precision/recall/F1 from (B, C, C) confusion counts, zero_division=0 like scikit-learn."""
    tp = np.diagonal(cm, axis1=1, axis2=2)
    pred = cm.sum(axis=1)
    true = cm.sum(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred > 0, tp / pred, 0.0)
        recall = np.where(true > 0, tp / true, 0.0)
        f1 = np.where(pred + true > 0, 2 * tp / (pred + true), 0.0)
    return {"macro_precision": precision.mean(1), "macro_recall": recall.mean(1), "macro_f1": f1.mean(1)}


def _auc_setup(score: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Resample-independent part of the weighted AUC: the negatives in score order, and for each
    positive how many sorted negatives score strictly below it (`lo`) and at most equal to it (`hi`)."""
    neg = np.flatnonzero(~positive)
    neg = neg[np.argsort(score[neg], kind="stable")]
    pos = np.flatnonzero(positive)
    neg_scores = score[neg]
    lo = np.searchsorted(neg_scores, score[pos], side="left")
    hi = np.searchsorted(neg_scores, score[pos], side="right")
    return pos, neg, lo, hi


def _weighted_auc(w: np.ndarray, pos: np.ndarray, neg: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """ROC AUC per resample, rows of `w` (B, N) being how often each row was drawn.

    AUC = P(score_pos > score_neg) + P(tie) / 2 = sum_pos w_i (below_i + at_most_i) / 2 / (W_pos W_neg),
    with below/at_most read off the cumulative negative weight in score order.
    Resamples without a positive or without a negative give NaN (skipped by the interval).
    """
    cum = np.zeros((w.shape[0], neg.size + 1))
    np.cumsum(w[:, neg], axis=1, out=cum[:, 1:])  # (B, Nneg + 1): negative weight below each rank
    wp = w[:, pos]
    n_pos, n_neg = wp.sum(1), cum[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (wp * (cum[:, lo] + cum[:, hi])).sum(1) / (2 * n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def _roc_auc(y: np.ndarray, p: np.ndarray, n_classes: int) -> tuple[float | None, list[int]]:
    """Point AUC (binary: proba[:, 1]; multiclass: macro one-vs-rest) and the positive classes it averages.

    None when some class is absent from y_true: one-vs-rest AUC of that class is undefined.
    """
    present = np.bincount(y, minlength=n_classes)
    if n_classes < 2 or np.any(present == 0):
        return None, []
    if n_classes == 2:
        return float(skm.roc_auc_score(y, p[:, 1])), [1]
    # the mean of per-class binary AUCs is exactly roc_auc_score(multi_class="ovr", average="macro"),
    # minus its check that rows sum to 1 within 1e-5, which bf16-computed probabilities can fail
    value = np.mean([skm.roc_auc_score(y == c, p[:, c]) for c in range(n_classes)])
    return float(value), list(range(n_classes))


def classification_metrics(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> dict[str, Any]:
    """Accuracy, macro F1/precision/recall, log loss, ROC AUC and ECE with CIs; per-class table; confusion.

    Accuracy's interval is Wilson's (at `confidence`, whatever `n_bootstrap`); the others are percentile
    bootstrap intervals over `n_bootstrap` resamples (none when it is 0). Each per-class entry carries
    `precision_ci` and `recall_ci` Wilson intervals with the k and n they rest on; a class never predicted
    (or absent from y_true) has no precision (recall) interval, because there is nothing to base one on.

    `y_true` (N,) holds class indices into `classes`; `proba` (N, C) the predicted probabilities.
    `labels` (N,) are the class indices actually predicted when they are not `proba.argmax(1)` (a binary
    classifier with a tuned threshold): the decision metrics (accuracy, precision, recall, F1, per-class,
    confusion) score them, while log loss, ROC AUC and ECE judge the probabilities themselves, which a
    threshold does not change. ECE keeps the argmax's top-label confidence, the usual definition.
    """
    y, p = _check_classification(y_true, proba, classes)
    n, n_classes = p.shape
    pred = p.argmax(axis=1) if labels is None else _check_labels(labels, n, n_classes)
    correct = (pred == y).astype(np.float64)
    calibrated = (p.argmax(axis=1) == y).astype(np.float64)  # ECE's notion of "right": the top label
    class_ids = np.arange(n_classes)
    # log loss only: float32 softmax rows sum to 1 +- 1e-7, which scikit-learn warns about. The other
    # metrics use `p` untouched, because renormalising moves values by an ulp and breaks score ties.
    p_norm = p / p.sum(axis=1, keepdims=True)
    eps = np.finfo(np.float64).eps
    nll = -np.log(np.clip(p_norm[np.arange(n), y], eps, 1 - eps))  # (N,) as in skm.log_loss
    conf, bins = _top_label_bins(p)
    gap = calibrated - conf
    code = y * n_classes + pred  # (N,) cell of the confusion matrix
    auc_value, auc_classes = _roc_auc(y, p, n_classes)
    auc_setup = [_auc_setup(p[:, c], y == c) for c in auc_classes]

    def stats(idx: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
        b = idx.shape[0]
        flat = (code[idx] + (np.arange(b) * n_classes * n_classes)[:, None]).ravel()
        cm = np.bincount(flat, minlength=b * n_classes * n_classes).reshape(b, n_classes, n_classes)
        ece_flat = (bins[idx] + (np.arange(b) * ECE_BINS)[:, None]).ravel()
        per_bin = np.bincount(ece_flat, weights=gap[idx].ravel(), minlength=b * ECE_BINS).reshape(b, ECE_BINS)
        out = {
            "log_loss": w @ nll / n,
            "ece": np.abs(per_bin).sum(1) / n,
            **_macro_from_confusion(cm),
        }
        if auc_setup:
            out["roc_auc"] = np.mean([_weighted_auc(w, *s) for s in auc_setup], axis=0)
        return out

    boot = bootstrap(n, n_bootstrap, seed, stats)
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, pred, labels=class_ids, zero_division=0)
    n_correct = int(correct.sum())
    out: dict[str, Any] = {"accuracy": {"value": float(skm.accuracy_score(y, pred))}}
    out["accuracy"].update(proportion_interval(n_correct, n, confidence))
    points: dict[str, float | None] = {
        "macro_f1": float(np.mean(f1)),
        "macro_precision": float(np.mean(precision)),
        "macro_recall": float(np.mean(recall)),
        "log_loss": float(skm.log_loss(y, p_norm, labels=class_ids)),
        "roc_auc": auc_value,
        "ece": expected_calibration_error(y, p),
    }
    out.update(
        (key, interval(value, None if boot is None else boot[key], confidence))
        for key, value in points.items()
        if value is not None
    )
    cm = skm.confusion_matrix(y, pred, labels=class_ids)  # (C, C), rows: true class
    hits, predicted = np.diagonal(cm), cm.sum(axis=0)
    out["per_class"] = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "precision_ci": proportion_interval(hits[i], predicted[i], confidence),  # n: predicted as the class
            "recall_ci": proportion_interval(hits[i], support[i], confidence),  # n: rows of the class
        }
        for i, name in enumerate(classes)
    }
    out["confusion_matrix"] = cm.tolist()
    out["n"] = int(n)
    return out


# ------------------------------------------------------------------------------------------ regression


def regression_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """R², MSE, RMSE and MAE with bootstrap CIs (resamples with a constant target are skipped for R²)."""
    y = np.asarray(y_true, dtype=np.float64).ravel()
    yp = np.asarray(y_pred, dtype=np.float64).ravel()
    if y.shape != yp.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y.shape[0]} vs {yp.shape[0]}")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(yp))):
        raise ValueError("y_true and y_pred must be finite")
    n = y.shape[0]
    if n < 2:
        raise ValueError(f"regression metrics need at least 2 rows, got {n}")
    sq, ab = (y - yp) ** 2, np.abs(y - yp)
    yc = y - y.mean()  # centred once, so the per-resample sums of squares do not cancel catastrophically

    def stats(idx: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
        mse = w @ sq / n
        shift = w @ yc / n
        raw = w @ (yc * yc)
        ss_tot = raw - n * shift * shift  # (B,) sum of squares about each resample's own mean
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(ss_tot > 1e-9 * raw, 1 - n * mse / ss_tot, np.nan)
        return {"r2": r2, "mse": mse, "rmse": np.sqrt(mse), "mae": w @ ab / n}

    boot = bootstrap(n, n_bootstrap, seed, stats)
    points = {
        "r2": float(skm.r2_score(y, yp)),
        "mse": float(skm.mean_squared_error(y, yp)),
        "rmse": float(skm.root_mean_squared_error(y, yp)),
        "mae": float(skm.mean_absolute_error(y, yp)),
    }
    out: dict[str, Any] = {
        key: interval(value, None if boot is None else boot[key], confidence) for key, value in points.items()
    }
    out["n"] = int(n)
    return out
