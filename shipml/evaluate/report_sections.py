"""The report's sections about how well the model does: overview, model vs baseline, results, curves.

Each function turns the run's files into one `Section`; a missing input becomes a "not available"
note in that section only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from shipml.evaluate.metrics import HEADLINE, metric_direction
from shipml.evaluate.plots import (
    calibration_svg,
    confusion_matrix_svg,
    learning_curves_svg,
    per_class_f1_svg,
    regression_scatter_svg,
)
from shipml.evaluate.report_decision import decision_parts
from shipml.evaluate.report_html import Raw, Section, esc, facts, figure, not_available, num, table
from shipml.evaluate.report_intervals import NO_SPREAD, interval_legend, interval_text, level, method_name, with_ci
from shipml.evaluate.rundir import RunFiles, dig

__all__ = ["comparison", "learning_curves", "overview", "results"]

_LABELS = {
    "accuracy": "accuracy",
    "macro_f1": "macro F1",
    "macro_precision": "macro precision",
    "macro_recall": "macro recall",
    "log_loss": "log loss",
    "roc_auc": "ROC AUC",
    "ece": "expected calibration error",
    "r2": "R²",
    "mse": "MSE",
    "rmse": "RMSE",
    "mae": "MAE",
}


def _label(metric: str) -> str:
    suffix = " (lower is better)" if metric_direction(metric) == "min" else ""
    return _LABELS.get(metric, metric) + suffix


def _scalars(block: Any) -> dict[str, dict[str, Any]]:
    """The value-with-interval entries of a metrics dict (skips per_class, confusion_matrix, n)."""
    if not isinstance(block, dict):
        return {}
    return {k: v for k, v in block.items() if isinstance(v, dict) and isinstance(v.get("value"), int | float)}


def _with_ci(entry: dict[str, Any] | None) -> str:
    return "–" if entry is None else with_ci(entry["value"], entry)


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool | None:
    """Whether two intervals overlap; None when either has none, or is a bootstrap one with no spread
    (a point is not a measured uncertainty, so "they do not overlap" would claim more than is known)."""
    if None in (a.get("ci_low"), a.get("ci_high"), b.get("ci_low"), b.get("ci_high")):
        return None
    if interval_text(a) == NO_SPREAD or interval_text(b) == NO_SPREAD:
        return None
    return bool(a["ci_low"] <= b["ci_high"] and b["ci_low"] <= a["ci_high"])


def _better(metric: str, model: float, baseline: float) -> str:
    if model == baseline:
        return "tie"
    model_wins = model > baseline if metric_direction(metric) == "max" else model < baseline
    return "model" if model_wins else "baseline"


def _duration(seconds: object) -> str | None:
    if not isinstance(seconds, int | float):
        return None
    minutes, secs = divmod(float(seconds), 60)
    return f"{int(minutes)} min {secs:.0f} s" if minutes else f"{secs:.1f} s"


# ---------------------------------------------------------------------------------------------- overview


def _tuned(tune: dict[str, Any] | None) -> str | None:
    """How many configurations `shipml tune` tried before it chose this run (tune.json)."""
    if not tune:
        return None
    counts = tune.get("trials") or {}
    n = sum(v for v in counts.values() if isinstance(v, int))
    detail = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    return (f"study {tune.get('study')}: the best of {n} configurations tried ({detail}) by validation "
            f"{tune.get('metric')} = {num(tune.get('value'))} (trial {tune.get('trial')}); the test split was "
            "scored for this run alone")


def overview(files: RunFiles) -> Section:
    """Who/what/when of the run, plus any run file that could not be read."""
    run = files.run
    best = run.get("best")
    best_text = None
    if isinstance(best, dict) and best:
        best_text = f"step {num(best.get('step'))} (epoch {num(best.get('epoch'))}): "
        best_text += f"{best.get('metric')} = {num(best.get('value'))}"
    pairs = [
        ("run", run.get("name")),
        ("id", run.get("id", files.run_dir.name)),
        ("task", run.get("task")),
        ("status", run.get("status")),
        ("created", run.get("created")),
        ("finished", run.get("finished")),
        ("training time", _duration(run.get("train_seconds"))),
        ("best checkpoint", best_text),
        ("stopped early", run.get("stopped_early")),
        ("parameters", run.get("params")),
        ("seed", run.get("seed")),
        ("data fingerprint", dig(files.data, "fingerprint")),
        ("chosen by tuning", _tuned(files.tune)),
    ]
    body = facts((k, v) for k, v in pairs if v is not None)
    if not run:
        body = Raw(not_available(files.missing("run.json")) + body)
    if files.problems:
        items = "".join(f"<li>{esc(p)}</li>" for p in files.problems.values())
        body = Raw(body + f'<ul class="warn">{items}</ul>')
    return Section("overview", "Overview", body)


# -------------------------------------------------------------------------------------------- comparison


def _verdict(metric: str, model: dict[str, Any], baseline: dict[str, Any], name: str, level: str, n: Any) -> str:
    """One honest paragraph: which is better on the headline metric, and whether the test set can tell.

    Non-overlapping intervals are strong evidence of a difference; overlapping ones are not proof of
    none, so the wording for overlap says "does not establish", never "equal".
    """
    a, b = float(model["value"]), float(baseline["value"])
    label = _LABELS.get(metric, metric)
    rows = f" ({n:,} rows)" if isinstance(n, int) else ""
    winner, overlap = _better(metric, a, b), _overlap(model, baseline)
    scores = f"model {num(a)} vs baseline {num(b)}"
    if winner == "tie":
        return f"The model and the {name} baseline tie on {label} ({num(a)}). Deep learning did not earn its keep here."
    if overlap is None:
        return (
            f"On {label} the {winner} is ahead ({scores}), but without confidence intervals for both (evaluate."
            "bootstrap: 0, or a bootstrap that showed no spread) this report cannot say whether the difference is "
            "more than chance."
        )
    if winner == "model" and not overlap:
        return (
            f"The model beats the {name} baseline on {label} ({scores}) and the {level} confidence "
            f"intervals do not overlap: deep learning earned its keep on this test set{rows}."
        )
    if winner == "model":
        return (
            f"The model scores better on {label} ({scores}), but the {level} confidence intervals overlap, "
            f"so this test set{rows} does not establish that it is really better. Deep learning has not "
            "clearly earned its keep: the baseline may be good enough, and it is far cheaper to run."
        )
    if not overlap:
        return (
            f"The {name} baseline beats the model on {label} ({scores}) and the {level} confidence intervals "
            "do not overlap. Deep learning did not earn its keep here: ship the baseline, or find out why the "
            "model falls short."
        )
    return (
        f"The {name} baseline scores better on {label} ({scores}); the {level} confidence intervals "
        f"overlap, so this test set{rows} does not establish that the model is any better. Deep learning "
        "did not earn its keep here."
    )


def comparison(files: RunFiles) -> Section:
    """Every test metric with its interval, model and baseline side by side, and the verdict."""
    title = "Model vs baseline"
    metrics = files.metrics
    if metrics is None:
        return Section("comparison", title, not_available(files.missing("metrics.json")))
    test, val = _scalars(metrics.get("test")), _scalars(metrics.get("val"))
    if not test:
        return Section("comparison", title, not_available("metrics.json holds no test metrics"))
    baseline = dig(metrics, "baseline") if isinstance(dig(metrics, "baseline"), dict) else {}
    base_test = _scalars(baseline.get("test"))
    base_name = str(baseline.get("name") or "baseline")
    rows = []
    for metric, entry in test.items():
        other = base_test.get(metric)
        better = _better(metric, entry["value"], other["value"]) if other else "–"
        overlap = _overlap(entry, other) if other else None
        cells = [_with_ci(entry), _with_ci(other), better, overlap, _with_ci(val.get(metric)), method_name(entry)]
        rows.append([_label(metric), *cells])
    headers = ["metric", "model (test)", f"{base_name} (test)", "better", "intervals overlap", "model (val)"]
    body = [table([*headers, "interval"], rows)]
    body.append(interval_legend(files, [*test.values(), *base_test.values(), *val.values()], "accuracy"))
    headline = HEADLINE.get(files.task_kind or "", "")
    headline = headline if headline in test else next(iter(test))
    if headline in base_test:
        n = dig(metrics, "test", "n")
        verdict = _verdict(headline, test[headline], base_test[headline], base_name, level(files), n)
        body.insert(0, Raw(f'<p class="verdict">{esc(verdict)}</p>'))
    else:
        why = "no baseline was fitted (evaluate.baseline: none)" if not baseline else "the baseline has no test metrics"
        body.insert(0, Raw(f'<p class="verdict">No yardstick: {esc(why)}.</p>'))
    costs = [
        ("baseline fit time", _duration(baseline.get("fit_seconds"))),
        ("model training time", _duration(files.run.get("train_seconds"))),
    ]
    if any(v for _, v in costs):
        body.append(facts((k, v) for k, v in costs if v))
    return Section("comparison", title, Raw("\n".join(body)))


# --------------------------------------------------------------------------------------- learning curves


def learning_curves(files: RunFiles) -> Section:
    """Train loss per step and validation metrics per evaluation, from metrics.jsonl."""
    svg = learning_curves_svg(files.records)
    if svg is None:
        why = files.missing("metrics.jsonl") if not files.records else "metrics.jsonl holds no train/val records"
        return Section("curves", "Learning curves", not_available(why))
    return Section("curves", "Learning curves", figure(svg, "loss per step; validation metrics per evaluation"))


# ------------------------------------------------------------------------------------------------ results


def _proba_table(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """(y_true indices, proba) from predictions' `proba:<class>` columns, or None when absent."""
    columns = [c for c in df.columns if str(c).startswith("proba:")]
    if not columns or "y_true" not in df:
        return None
    index = {c.removeprefix("proba:"): i for i, c in enumerate(columns)}
    y = df["y_true"].astype(str).map(index)
    known = y.notna().to_numpy()
    if not known.any():
        return None
    return y[known].to_numpy(dtype=np.int64), df.loc[known, columns].to_numpy(dtype=np.float64)


def _confusion(test: dict[str, Any], n_classes: int) -> np.ndarray | None:
    """The (C, C) confusion matrix when metrics.json holds a well-formed one."""
    try:
        cm = np.asarray(test.get("confusion_matrix"), dtype=np.int64)
    except (TypeError, ValueError):
        return None
    return cm if cm.shape == (n_classes, n_classes) else None


def _classification_results(files: RunFiles, test: Any) -> list[str]:
    raw = dig(test, "per_class")
    per_class = {k: v for k, v in raw.items() if isinstance(dig(v, "f1"), int | float)} if isinstance(raw, dict) else {}
    if not per_class:
        return [not_available(files.missing("metrics.json")), *decision_parts(files)]
    base_per_class = dig(files.metrics, "baseline", "test", "per_class") or {}
    rows = [
        [
            name,
            *(with_ci(dig(m, k), dig(m, f"{k}_ci")) for k in ("precision", "recall")),
            dig(m, "f1"),
            dig(base_per_class, name, "f1"),
            dig(m, "support"),
        ]
        for name, m in per_class.items()
    ]
    parts = [table(["class", "precision", "recall", "F1", "baseline F1", "support"], rows)]
    shown = [dig(m, f"{k}_ci") for m in per_class.values() for k in ("precision", "recall")]
    parts.append(
        interval_legend(
            files,
            shown,
            "a class's precision, out of the rows predicted as it, and recall, "
            "out of its rows; none where that count is 0",
        )
    )
    parts.append(figure(per_class_f1_svg(per_class), "F1 per class"))
    cm = _confusion(test, len(per_class))
    if cm is not None:
        parts.append(figure(confusion_matrix_svg(cm.tolist(), list(per_class)), "rows: true class"))
    calibration = None if files.predictions is None else _proba_table(files.predictions)
    if calibration is None:
        parts.append(not_available("calibration plot: " + files.missing("predictions.parquet")))
    else:
        parts.append(figure(calibration_svg(*calibration), "bars below the diagonal: overconfident"))
    return parts + decision_parts(files)


def results(files: RunFiles) -> Section:
    """Classification: per-class table and charts, confusion, calibration, and for binary tasks the
    decision threshold and precision–recall curve. Regression: predicted vs true."""
    title = "Test results"
    if files.task_kind != "regression":
        return Section("results", title, Raw("\n".join(_classification_results(files, dig(files.metrics, "test")))))
    df = files.predictions
    if df is None or not {"y_true", "y_pred"} <= set(df.columns):
        return Section("results", title, not_available(files.missing("predictions.parquet")))
    svg = regression_scatter_svg(df["y_true"].to_numpy(float), df["y_pred"].to_numpy(float))
    return Section("results", title, figure(svg, "each point is one test row"))
