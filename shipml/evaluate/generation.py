"""Sample-quality statistics of a generator, from feature vectors and judge decisions (numpy only).

    frechet_distance(a, b)                 FID's formula (Heusel et al. 2017) between two feature sets
    precision_recall(real, fake, k)        the k-NN manifold estimate (Kynkäänniemi et al. 2019)
    class_report(requested, judged, ...)   requested-class share, per-class coverage, mode-collapse flags

The features come from shipml's own judge classifier (shipml/judge.py), never Inception: the numbers are
comparable between runs judged by the same judge on the same data, not with published FIDs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import linalg

__all__ = ["COVERED_RECALL", "COVERED_SHARE", "class_report", "frechet_distance", "precision_recall"]

# a class counts as covered when the judge puts at least this share of the samples asked for it in it, and the
# samples reach at least this share of its real images' k-NN manifold (recall); otherwise it is flagged
COVERED_SHARE = 0.5
COVERED_RECALL = 0.5


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) between (N, D) and (M, D) feature sets."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s_a @ s_b)
    if not np.isfinite(covmean).all():  # near-singular products: the usual offset (pytorch-fid does the same)
        eps = np.eye(len(s_a)) * 1e-6
        covmean = linalg.sqrtm((s_a + eps) @ (s_b + eps))
    covmean = np.real(covmean)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean))


def _sq_dists(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, M) squared Euclidean distances, clipped at 0 (rounding)."""
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
    return np.maximum(d, 0.0)


def _radii(x: np.ndarray, k: int) -> np.ndarray:
    """Squared distance of each row of `x` to its k-th nearest other row."""
    d = _sq_dists(x, x)
    np.fill_diagonal(d, np.inf)
    k = min(k, len(x) - 1)
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def _coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """For each point: is it inside some centre's k-NN ball?"""
    inside = np.zeros(len(points), dtype=bool)
    for s in range(0, len(points), chunk):
        inside[s:s + chunk] = (_sq_dists(points[s:s + chunk], centres) <= radii[None, :]).any(axis=1)
    return inside


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Precision: the share of generated samples inside the real k-NN manifold (are they realistic?); recall:
    the share of real samples inside the generated manifold (is the data's variety reproduced?)."""
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    if len(real) < 2 or len(fake) < 2:
        return float("nan"), float("nan")
    precision = _coverage(fake, real, _radii(real, k)).mean()
    recall = _coverage(real, fake, _radii(fake, k)).mean()
    return float(precision), float(recall)


def class_report(classes: list[str], requested: np.ndarray, judged: np.ndarray, real_feats: np.ndarray,
                 real_y: np.ndarray, fake_feats: np.ndarray, k: int, conditional: bool) -> dict[str, Any]:
    """Per class: how many samples were asked for (conditional) or judged (unconditional) in it, the share the
    judge agrees with, precision/recall within the class, and whether it is covered."""
    rows = []
    n = len(judged)
    for c, name in enumerate(classes):
        mine = requested == c if conditional else judged == c
        real_c = real_feats[real_y == c]
        p, r = precision_recall(real_c, fake_feats[mine], k) if mine.sum() >= 2 else (float("nan"), 0.0)
        share = float((judged[mine] == c).mean()) if conditional and mine.any() else None
        real_share = float((real_y == c).mean())
        gen_share = float(mine.mean()) if n else 0.0
        if conditional:
            covered = share is not None and share >= COVERED_SHARE and r >= COVERED_RECALL
        else:  # an unconditional generator covers a class it draws at half its real frequency or more
            covered = gen_share >= COVERED_SHARE * real_share and r >= COVERED_RECALL
        rows.append({"class": name, "n": int(mine.sum()), "requested_share": share, "real_share": real_share,
                     "generated_share": gen_share, "precision": p, "recall": r, "covered": bool(covered)})
    out: dict[str, Any] = {"per_class": rows, "covered": sum(r["covered"] for r in rows), "classes": len(classes),
                           "collapsed": [r["class"] for r in rows if not r["covered"]]}
    if conditional:
        out["requested_share"] = float((judged == requested).mean())
    return out
