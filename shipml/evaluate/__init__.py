"""The evaluate room: metrics with confidence intervals, a classic baseline, charts and the HTML report.

Works on numpy arrays and run-directory files only (no torch), so a finished run can be re-reported
anywhere:

    metrics = classification_metrics(y_true, proba, classes)     # value + bootstrap CI per metric
    baseline = fit_baseline(dataset, "auto", seed=0)             # the yardstick the model must beat
    t = tune_threshold(y_val == pos, p_val[:, pos], "max_fpr")   # binary: flag iff p(pos) >= t
    write_report(Path("runs/<id>"))                               # runs/<id>/report.html
"""

from __future__ import annotations

from shipml.evaluate.baseline import BASELINES, Baseline, BaselineResult, fit_baseline
from shipml.evaluate.metrics import (
    HEADLINE,
    classification_metrics,
    expected_calibration_error,
    metric_direction,
    regression_metrics,
)
from shipml.evaluate.plots import (
    calibration_svg,
    confusion_matrix_svg,
    learning_curves_svg,
    pareto_front,
    per_class_f1_svg,
    pr_curve_svg,
    regression_scatter_svg,
    scatter_frontier,
    scatter_svg,
)
from shipml.evaluate.report import REPORT_NAME, write_report
from shipml.evaluate.threshold import ThresholdWarning, binary_rates, tune_threshold

__all__ = [
    "BASELINES",
    "HEADLINE",
    "REPORT_NAME",
    "Baseline",
    "BaselineResult",
    "ThresholdWarning",
    "binary_rates",
    "calibration_svg",
    "classification_metrics",
    "confusion_matrix_svg",
    "expected_calibration_error",
    "fit_baseline",
    "learning_curves_svg",
    "metric_direction",
    "pareto_front",
    "per_class_f1_svg",
    "pr_curve_svg",
    "regression_metrics",
    "regression_scatter_svg",
    "scatter_frontier",
    "scatter_svg",
    "tune_threshold",
    "write_report",
]
