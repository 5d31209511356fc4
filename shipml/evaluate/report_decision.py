"""The report's binary-decision part: the threshold each classifier uses and what it buys, and the
precision–recall curves with those operating points marked.

A binary classifier's headline accuracy hides the trade it makes: a spam filter tuned to flag at
most 0.1% of real emails gives up recall for it. The table shows the trade on validation (where the
threshold was chosen) and on test (whether it held); the curve shows what other thresholds would buy.
Inputs are metrics.json's optional `decision` blocks and predictions.parquet's probability columns;
either may be missing (older runs, multiclass tasks) and the part shrinks accordingly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from shipml.core.proportion import proportion_interval
from shipml.evaluate.plots import pr_curve_svg
from shipml.evaluate.report_html import esc, figure, not_available, num, table
from shipml.evaluate.report_intervals import interval_legend, with_ci
from shipml.evaluate.rundir import RunFiles, dig
from shipml.evaluate.threshold import binary_rates

__all__ = ["decision_parts"]

_RATES = ("precision", "recall", "f1", "fpr", "fp", "fn")  # binary_rates keys shown, in column order
# the rates that are proportions, as (k, the counts adding up to n) of binary_rates' tp/fp/tn/fn
_PROPORTIONS = {"precision": ("tp", ("tp", "fp")), "recall": ("tp", ("tp", "fn")), "fpr": ("fp", ("fp", "tn"))}


def _classes(files: RunFiles) -> list[str]:
    """The class names in the order of the model's outputs: data.json's list, else the proba columns."""
    listed = dig(files.data, "classes")
    if isinstance(listed, list) and listed:
        return [str(c) for c in listed]
    df = files.predictions
    return [] if df is None else [str(c).removeprefix("proba:") for c in df.columns if str(c).startswith("proba:")]


def _decisions(files: RunFiles) -> list[tuple[str, str, dict[str, Any]]]:
    """(who, column prefix in predictions.parquet, decision block) for the model and the baseline."""
    baseline_name = dig(files.metrics, "baseline", "name")
    who = f"baseline ({baseline_name})" if isinstance(baseline_name, str) else "baseline"
    blocks = [
        ("model", "", dig(files.metrics, "decision")),
        (who, "baseline:", dig(files.metrics, "baseline", "decision")),
    ]
    return [(name, prefix, block if isinstance(block, dict) else {}) for name, prefix, block in blocks]


def _threshold(block: dict[str, Any]) -> float | None:
    """The tuned threshold, or None for argmax (or a missing/malformed block)."""
    value = block.get("threshold")
    tuned = block.get("strategy") not in (None, "argmax")
    return float(value) if tuned and isinstance(value, int | float) and not isinstance(value, bool) else None


def _strategy(block: dict[str, Any]) -> str:
    strategy = str(block.get("strategy") or "argmax")
    cap = block.get("max_fpr")
    return f"{strategy} (FPR ≤ {num(cap)})" if strategy == "max_fpr" and isinstance(cap, int | float) else strategy


def _rate_interval(files: RunFiles, rates: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The Wilson interval of a proportion rate from the stored counts; None when they are missing.

    metrics.json stores the counts (tp, fp, tn, fn), so the interval is computed here at the run's
    confidence level rather than stored: older runs get one too.
    """
    k, parts = _PROPORTIONS[key]
    counts = [rates.get(c) for c in (k, *parts)]
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
        return None
    confidence = files.evaluate_option("confidence", 0.95)
    confidence = confidence if isinstance(confidence, float) and 0 < confidence < 1 else 0.95
    return proportion_interval(counts[0], sum(counts[1:]), confidence)


def _cell(files: RunFiles, rates: dict[str, Any], key: str) -> object:
    """A rate as shown: proportions with their Wilson interval, the rest (F1, counts) as they are."""
    if key not in _PROPORTIONS or not isinstance(rates.get(key), int | float):
        return rates.get(key)
    return with_ci(rates[key], _rate_interval(files, rates, key))


def _table(files: RunFiles) -> list[str]:
    """Rows per (who, split) with the rates at the threshold; notes where a test FPR broke its cap."""
    rows, notes, intervals = [], [], []
    for who, _, block in _decisions(files):
        if not block:
            continue
        t = _threshold(block)
        for split in ("val", "test"):
            r = block.get(split) if isinstance(block.get(split), dict) else {}
            shown = "argmax" if t is None else f"{t:.6g}"
            rows.append([who, split, _strategy(block), shown, *(_cell(files, r, k) for k in _RATES)])
            intervals += [_rate_interval(files, r, k) for k in _PROPORTIONS]
        extra = block.get("notes")  # e.g. ThresholdWarning messages recorded by run.py
        notes += [f"{who}: {note}" for note in extra if isinstance(note, str)] if isinstance(extra, list) else []
        cap, test_fpr = block.get("max_fpr"), dig(block, "test", "fpr")
        numbers = isinstance(cap, int | float) and isinstance(test_fpr, int | float)
        if block.get("strategy") == "max_fpr" and numbers and test_fpr > cap:
            negatives = [dig(block, "val", k) for k in ("fp", "tn")]
            counted = f"{sum(negatives):,} " if all(isinstance(v, int) for v in negatives) else ""
            tail = f" Pinning a rate of {num(cap)} down takes many more than {1 / cap:,.0f} negatives." if cap else ""
            notes.append(
                f"The {who}'s false-positive rate on test ({num(test_fpr)}) is above the cap of {num(cap)} it "
                f"was tuned to on {counted}validation negatives: the cap held there but does not carry over.{tail}"
            )
    if not rows:
        return []
    headers = ["", "split", "strategy", "threshold", "precision", "recall", "F1", "FPR"]
    headers += ["false positives", "false negatives"]
    parts = [table(headers, rows)]
    parts.append(interval_legend(files, intervals, "precision, recall and FPR, from the counts"))
    parts += [f'<p class="na">{esc(note)}</p>' for note in notes]
    return parts


def _flags(df: pd.DataFrame, prefix: str, positive: str, negative: str, block: dict[str, Any]) -> np.ndarray | None:
    """Which test rows a classifier labelled positive: its stored predictions, else re-derived from its
    probabilities (threshold, or argmax with ties to the class listed first, as numpy's argmax does)."""
    if f"{prefix}y_pred" in df:
        return (df[f"{prefix}y_pred"].astype(str) == positive).to_numpy()
    pos, neg = f"{prefix}proba:{positive}", f"{prefix}proba:{negative}"
    t = _threshold(block)
    if pos in df and t is not None:
        return df[pos].to_numpy(float) >= t
    if pos not in df or neg not in df:
        return None
    first = list(df.columns).index(pos) < list(df.columns).index(neg)
    p, q = df[pos].to_numpy(float), df[neg].to_numpy(float)
    return p >= q if first else p > q


def _curve(files: RunFiles, classes: list[str], positive: str) -> list[str]:
    df = files.predictions
    if df is None or "y_true" not in df:
        return [not_available("precision–recall curve: " + files.missing("predictions.parquet"))]
    if f"proba:{positive}" not in df:
        return [not_available(f"precision–recall curve: predictions.parquet has no proba:{positive} column")]
    negative = next(c for c in classes if c != positive)
    y = (df["y_true"].astype(str) == positive).to_numpy()
    if y.all() or not y.any():
        return [not_available(f"precision–recall curve: the test split needs both {positive} and other rows")]
    curves, marks = [], []
    for who, prefix, block in _decisions(files):
        column = f"{prefix}proba:{positive}"
        if column not in df:
            continue
        scores = df[column].to_numpy(float)
        finite = np.isfinite(scores)
        curves.append((who, y[finite], scores[finite]))
        flagged = _flags(df, prefix, positive, negative, block)
        if flagged is not None:
            rates = binary_rates(y, flagged.astype(float), 0.5)
            t = _threshold(block)
            at = "argmax" if t is None else f"threshold {t:.4g}"
            marks.append((f"{who} at {at}", rates["precision"], rates["recall"]))
    svg = pr_curve_svg(curves, marks, title=f"precision–recall on test (positive: {positive})")
    return [figure(svg, "lines: every possible threshold; markers: the thresholds in use")]


def decision_parts(files: RunFiles) -> list[str]:
    """HTML parts for a binary task (two classes); nothing for other tasks."""
    classes = _classes(files)
    if len(classes) != 2:
        return []
    named = [b.get("positive") for _, _, b in _decisions(files)]
    positive = next((str(p) for p in named if p in classes), classes[1])
    intro = (
        f"Positive class: <b>{esc(positive)}</b>. A tuned threshold flags a row as {esc(positive)} when "
        f"p({esc(positive)}) ≥ threshold; it is chosen on the validation split, and the test rows show "
        "whether it holds on data it was not chosen on."
    )
    parts = ["<h3>Decision threshold</h3>", f"<p>{intro}</p>", *_table(files)]
    if len(parts) == 2:
        parts.append("<p>No tuned threshold recorded: predictions are the most probable class (argmax).</p>")
    return [*parts, *_curve(files, classes, positive)]
