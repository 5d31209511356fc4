"""Small, deterministic inline-SVG charts for the HTML report (and the compression frontier).

Figures are built with `matplotlib.figure.Figure` directly, never pyplot, so no backend is switched
and no global figure registry fills up. Style settings apply only inside each call (`rc_context`);
`svg.hashsalt` makes element ids repeatable, so the same inputs give byte-identical SVG. Every
function returns the `<svg>...</svg>` element alone, ready to paste into HTML.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve

from shipml.evaluate.metrics import ECE_BINS, reliability_bins

__all__ = [
    "calibration_svg",
    "confusion_matrix_svg",
    "learning_curves_svg",
    "pareto_front",
    "per_class_f1_svg",
    "pr_curve_svg",
    "regression_scatter_svg",
    "scatter_frontier",
    "scatter_svg",
]

_STYLE = {
    "svg.fonttype": "none",  # text stays text: far smaller than glyph paths
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 7,
    "legend.frameon": False,
}
_RASTER_POINTS = 1000  # scatters above this are embedded as one PNG instead of one element per point
_MAX_LINE_POINTS = 1000  # longer curves are averaged into this many buckets
_NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}  # no date, no RDF block
_NON_METRIC_KEYS = {"kind", "step", "epoch", "loss", "lr", "samples_per_s"}


def _style(chart: str) -> contextlib.AbstractContextManager[Any]:
    """The report's chart style, applied only while one chart is built and saved.

    A salt per chart kind keeps element ids distinct between the charts inlined in one page while
    staying byte-for-byte repeatable.
    """
    return mpl.rc_context({**_STYLE, "svg.hashsalt": f"shipml-{chart}"})


def _svg(fig: Figure) -> str:
    """The bare <svg> element of a figure (no XML declaration, doctype or metadata block)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", dpi=100, bbox_inches="tight", metadata=_NO_METADATA)
    text = buf.getvalue()
    return text[text.index("<svg") :].strip()


def _plain(text: object) -> str:
    """User text for matplotlib: a `$` would otherwise start mathtext (and can raise on bad input)."""
    return str(text).replace("$", r"\$")


def _bucket_mean(xs: np.ndarray, ys: np.ndarray, limit: int = _MAX_LINE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Average a long curve into `limit` consecutive buckets so the SVG path stays small."""
    if xs.size <= limit:
        return xs, ys
    edges = np.linspace(0, xs.size, limit + 1).astype(int)
    return np.add.reduceat(xs, edges[:-1]) / np.diff(edges), np.add.reduceat(ys, edges[:-1]) / np.diff(edges)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and bool(np.isfinite(value))


# ------------------------------------------------------------------------------------------ training


def learning_curves_svg(records: Sequence[Mapping[str, Any]]) -> str | None:
    """Training loss per step and validation loss/metrics per evaluation; None without any records."""
    stepped = [r for r in records if _is_number(r.get("step"))]
    train = [r for r in stepped if r.get("kind") == "train" and _is_number(r.get("loss"))]
    val = [r for r in stepped if r.get("kind") == "val"]
    metric_names = sorted({k for r in val for k, v in r.items() if k not in _NON_METRIC_KEYS and _is_number(v)})
    if not train and not val:
        return None
    with _style("learning-curves"):
        fig = Figure(figsize=(9 if metric_names else 5, 3))
        ax = fig.add_subplot(1, 2 if metric_names else 1, 1)
        if train:
            steps = np.array([r["step"] for r in train], dtype=float)
            losses = np.array([r["loss"] for r in train], dtype=float)
            ax.plot(*_bucket_mean(steps, losses), lw=1, color="#4c72b0", label="train loss")
        val_loss = [r for r in val if _is_number(r.get("loss"))]
        if val_loss:
            vx, vy = [r["step"] for r in val_loss], [r["loss"] for r in val_loss]
            ax.plot(vx, vy, "o-", ms=3, color="#dd8452", label="val loss")
        ax.set(xlabel="step", ylabel="loss", title="loss")
        ax.legend()
        if metric_names:
            ax2 = fig.add_subplot(1, 2, 2)
            # scores live in [-1, 1] (accuracy, F1, R^2); errors such as MAE are in the target's units and
            # would flatten the scores into a line, so they get their own axis on the right
            ax3 = None
            for i, name in enumerate(metric_names):
                rows = [r for r in val if _is_number(r.get(name))]
                ys = [r[name] for r in rows]
                target = ax2
                if any(abs(y) > 1.0 for y in ys):
                    ax3 = ax3 or ax2.twinx()
                    target = ax3
                target.plot(
                    [r["step"] for r in rows],
                    ys,
                    "o-" if target is ax2 else "s--",
                    ms=3,
                    color=f"C{i}",
                    label=_plain(name),
                )
            ax2.set(xlabel="step", title="validation metrics")
            handles = [h for a in (ax2, ax3) if a is not None for h in a.get_legend_handles_labels()[0]]
            if ax3 is not None:
                ax3.set_ylabel("error (target units)")
            (ax3 or ax2).legend(handles=handles, loc="center right")  # top-most axes, or the twin hides it
        return _svg(fig)


# ----------------------------------------------------------------------------------- classification


def confusion_matrix_svg(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> str:
    """Heatmap coloured by each true class's share (so rare classes stay visible), annotated with counts."""
    cm = np.asarray(matrix, dtype=float)  # (C, C) rows true, cols predicted
    n = cm.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    side = min(9.0, 2.0 + 0.45 * n)
    with _style("confusion-matrix"):
        fig = Figure(figsize=(side, side * 0.9))
        ax = fig.add_subplot()
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        ax.grid(False)
        if n <= 25:  # beyond that the numbers no longer fit their cells
            for i, j in zip(*np.nonzero(cm), strict=True):
                color = "white" if share[i, j] > 0.6 else "#222222"
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7, color=color)
        labels = [_plain(c) for c in classes]
        step = max(1, n // 30)  # at most ~30 tick labels
        ax.set_xticks(range(0, n, step), labels[::step], rotation=45, ha="right")
        ax.set_yticks(range(0, n, step), labels[::step])
        ax.set(xlabel="predicted", ylabel="true", title="confusion matrix (colour: share of the true class)")
        return _svg(fig)


def calibration_svg(y_true: np.ndarray, proba: np.ndarray) -> str:
    """Reliability diagram: accuracy vs confidence per bin (the ECE's own bins), with row counts below."""
    counts, mean_conf, accuracy = reliability_bins(np.asarray(y_true), np.asarray(proba, dtype=float))
    width = 1.0 / ECE_BINS
    centers = (np.arange(ECE_BINS) + 0.5) * width
    filled = counts > 0
    with _style("calibration"):
        fig = Figure(figsize=(4, 4.2))
        ax, ax_n = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        ax.bar(centers[filled], accuracy[filled], width=width * 0.9, color="#4c72b0", label="accuracy")
        ax.plot(mean_conf[filled], accuracy[filled], "o", ms=3, color="#222222", label="mean confidence")
        ax.plot([0, 1], [0, 1], "--", color="#888888", lw=1, label="perfect calibration")
        ax.set(ylim=(0, 1), ylabel="accuracy", title="calibration (top-label confidence)")
        ax.legend(loc="upper left")
        ax_n.bar(centers, counts, width=width * 0.9, color="#999999")
        ax_n.set(xlim=(0, 1), xlabel="confidence", ylabel="rows")
        return _svg(fig)


def per_class_f1_svg(per_class: Mapping[str, Mapping[str, float]]) -> str:
    """Horizontal bar per class (F1), in the given class order, to spot the classes that drag the mean."""
    names = list(per_class)
    with _style("per-class-f1"):
        fig = Figure(figsize=(5, min(12.0, 1.0 + 0.22 * len(names))))
        ax = fig.add_subplot()
        ax.barh(range(len(names)), [float(per_class[c]["f1"]) for c in names], color="#4c72b0")
        ax.set_yticks(range(len(names)), [_plain(c) for c in names])
        ax.invert_yaxis()
        ax.set(xlim=(0, 1), xlabel="F1", title="F1 per class (test)")
        return _svg(fig)


def pr_curve_svg(
    curves: Sequence[tuple[str, np.ndarray, np.ndarray]],
    marks: Sequence[tuple[str, float, float]],
    *,
    title: str = "precision–recall (test)",
) -> str:
    """Precision vs recall of each scorer (label, y_true in {0, 1}, positive-class score), with the
    average precision in the legend, and each operating point (label, precision, recall) marked: the
    curve shows what any threshold could buy, the mark what the chosen one does."""
    with _style("pr-curve"):
        fig = Figure(figsize=(4.6, 4))
        ax = fig.add_subplot()
        for i, (label, y_true, scores) in enumerate(curves):
            y = np.asarray(y_true).astype(bool)
            if not y.any():  # no positive row: precision-recall is undefined
                continue
            precision, recall = precision_recall_curve(y, np.asarray(scores, dtype=float))[:2]
            ap = average_precision_score(y, np.asarray(scores, dtype=float))
            xs, ys = _bucket_mean(recall, precision)  # recall descending, drawn as scikit-learn draws it
            ax.plot(xs, ys, lw=1.2, color=f"C{i}", drawstyle="steps-post", label=f"{_plain(label)} (AP {ap:.3f})")
        for i, (label, precision, recall) in enumerate(marks):
            ax.plot([recall], [precision], "os^Dv"[i % 5], ms=6, color=f"C{i}", mec="#222222", label=_plain(label))
        ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=_plain(title))
        ax.legend(loc="lower left")
        return _svg(fig)


# ---------------------------------------------------------------------------------------- regression


def regression_scatter_svg(y_true: np.ndarray, y_pred: np.ndarray) -> str:
    """Predicted vs true with the identity line; points on the line are perfect predictions."""
    yt, yp = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    lo, hi = float(min(yt.min(), yp.min())), float(max(yt.max(), yp.max()))
    with _style("regression-scatter"):
        fig = Figure(figsize=(4, 4))
        ax = fig.add_subplot()
        ax.scatter(yt, yp, s=6, alpha=0.5, color="#4c72b0", lw=0, rasterized=yt.size > _RASTER_POINTS)
        ax.plot([lo, hi], [lo, hi], "--", color="#888888", lw=1)
        ax.set(xlabel="true", ylabel="predicted", title="predicted vs true (test)")
        return _svg(fig)


# ------------------------------------------------------------------------------------------- generic


def _scatter_axes(
    fig: Figure,
    xs: np.ndarray,
    ys: np.ndarray,
    labels: Sequence[str] | None,
    xlabel: str,
    ylabel: str,
    title: str,
) -> Any:
    """Draw labelled points on a new axes of `fig` and return the axes."""
    ax = fig.add_subplot()
    ax.scatter(xs, ys, s=18, color="#4c72b0", zorder=3, rasterized=xs.size > _RASTER_POINTS)
    if labels is not None and len(labels) <= 30:  # more labels than that only overprint each other
        for xi, yi, label in zip(xs, ys, labels, strict=True):
            ax.annotate(_plain(label), (xi, yi), xytext=(4, 3), textcoords="offset points", fontsize=7)
    ax.set(xlabel=_plain(xlabel), ylabel=_plain(ylabel), title=_plain(title))
    return ax


def scatter_svg(
    xs: Sequence[float],
    ys: Sequence[float],
    labels: Sequence[str] | None,
    xlabel: str,
    ylabel: str,
    title: str,
) -> str:
    """A labelled scatter plot (labels drawn next to the points when there are at most 30)."""
    with _style("scatter"):
        fig = Figure(figsize=(5, 3.5))
        _scatter_axes(fig, np.asarray(xs, dtype=float), np.asarray(ys, dtype=float), labels, xlabel, ylabel, title)
        return _svg(fig)


def pareto_front(xs: Sequence[float], ys: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x, higher y), in order of x."""
    order = sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i]))
    front: list[int] = []
    for i in order:
        if not front or ys[i] > ys[front[-1]]:
            front.append(i)
    return front


def scatter_frontier(
    points: Sequence[Mapping[str, Any]],
    *,
    x: str = "latency_ms",
    y: str = "accuracy",
    label: str = "name",
    title: str = "accuracy / latency frontier",
) -> str:
    """Variants as points (lower x and higher y are better) with the Pareto frontier drawn through them.

    Each point is a mapping with keys `x`, `y` and `label` (by default latency_ms, accuracy, name).
    """
    xs = np.array([float(p[x]) for p in points])
    ys = np.array([float(p[y]) for p in points])
    front = pareto_front(xs.tolist(), ys.tolist())
    with _style("frontier"):
        fig = Figure(figsize=(5, 3.5))
        ax = _scatter_axes(fig, xs, ys, [str(p.get(label, "")) for p in points], x, y, title)
        if front:
            ax.step(xs[front], ys[front], where="post", color="#dd8452", lw=1, label="frontier", zorder=2)
            ax.legend()
        return _svg(fig)
