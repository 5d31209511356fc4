"""Charts are bare, deterministic, escaped SVG, and building them leaves matplotlib's global state alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shipml.evaluate import (
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

CLASSES = ["cat", "<script>alert(1)</script>", "$5 & up"]
RECORDS = [
    {"kind": "train", "step": s, "epoch": s / 50, "loss": 1 / (1 + s), "lr": 1e-3, "samples_per_s": 500.0}
    for s in range(1, 3001)
] + [
    {"kind": "val", "step": s, "epoch": s / 50, "loss": 1 / (1 + s), "accuracy": 0.5 + s / 7000}
    for s in range(0, 3001, 500)
]

CHARTS = {
    "learning_curves": lambda: learning_curves_svg(RECORDS),
    "confusion_matrix": lambda: confusion_matrix_svg([[5, 1, 0], [2, 7, 1], [0, 0, 9]], CLASSES),
    "calibration": lambda: calibration_svg(
        np.array([0, 1, 2, 1]), np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    ),
    "per_class_f1": lambda: per_class_f1_svg({c: {"f1": f} for c, f in zip(CLASSES, [0.9, 0.5, 0.7], strict=True)}),
    "regression_scatter": lambda: regression_scatter_svg(np.arange(50.0), np.arange(50.0) + np.sin(np.arange(50))),
    "pr_curve": lambda: pr_curve_svg(
        [
            ("model", np.array([0, 0, 1, 1, 0, 1]), np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])),
            (CLASSES[1], np.array([0, 0, 1, 1, 0, 1]), np.array([0.3, 0.2, 0.6, 0.7, 0.1, 0.5])),
            ("no positives: skipped", np.zeros(3), np.array([0.1, 0.2, 0.3])),
        ],
        [("model at threshold 0.5", 1.0, 2 / 3), ("$5 & up", 0.75, 1.0)],
        title=f"precision–recall (positive: {CLASSES[1]})",
    ),
    "scatter": lambda: scatter_svg([1.0, 2.0], [0.9, 0.95], ["a", "<b>"], "latency (ms)", "accuracy", "t"),
    "frontier": lambda: scatter_frontier(
        [
            {"name": "fp32", "latency_ms": 3.0, "accuracy": 0.98},
            {"name": "int8", "latency_ms": 1.2, "accuracy": 0.975},
            {"name": "pruned", "latency_ms": 2.0, "accuracy": 0.96},
        ]
    ),
}


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_chart_is_bare_deterministic_svg(name: str) -> None:
    svg = CHARTS[name]()
    assert svg is not None
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<?xml" not in svg and "DOCTYPE" not in svg and "<metadata" not in svg
    assert svg == CHARTS[name]()  # byte-identical on a second run
    assert len(svg) < 80_000


@pytest.mark.parametrize("name", ["confusion_matrix", "per_class_f1", "pr_curve"])
def test_user_text_is_escaped_and_dollars_are_literal(name: str) -> None:
    svg = CHARTS[name]()
    assert svg is not None
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "$5" in svg  # drawn as text, not parsed as mathtext


def test_large_scatter_is_rasterized_and_small() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=20_000)
    svg = regression_scatter_svg(y, y + rng.normal(size=20_000))
    assert "<image" in svg and svg.count("<use") < 100
    assert len(svg) < 150_000


def test_learning_curves_without_records_or_val_metrics() -> None:
    assert learning_curves_svg([]) is None
    assert learning_curves_svg([{"kind": "other"}]) is None
    only_train = learning_curves_svg([r for r in RECORDS if r["kind"] == "train"])
    assert only_train is not None and "validation metrics" not in only_train


def test_pareto_front() -> None:
    xs, ys = [3.0, 1.2, 2.0, 2.5, 1.2], [0.98, 0.975, 0.96, 0.985, 0.97]
    assert pareto_front(xs, ys) == [1, 3]  # 1.2 ms at 0.975, then 2.5 ms at 0.985; 3.0 ms is dominated


def test_no_pyplot_no_torch_and_global_rc_untouched() -> None:
    code = """
import sys
import matplotlib
def snapshot():  # reading rcParams["backend"] would itself import pyplot
    return {k: matplotlib.rcParams[k] for k in matplotlib.rcParams if k != "backend"}
before = snapshot()
from shipml.evaluate import confusion_matrix_svg
confusion_matrix_svg([[1, 0], [0, 1]], ["a", "b"])
assert "matplotlib.pyplot" not in sys.modules, "pyplot imported"
assert "torch" not in sys.modules, "torch imported"
after = snapshot()
assert before == after, {k for k in before if before[k] != after[k]}
"""
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root)
    assert result.returncode == 0, result.stderr


def test_pr_curve_marks_and_average_precision() -> None:
    y = np.array([0, 1, 1, 0, 1])
    svg = pr_curve_svg([("model", y, np.array([0.2, 0.9, 0.6, 0.7, 0.8]))], [("model at argmax", 0.75, 1.0)])
    assert "AP 0.917" in svg  # sklearn's average precision: (1 + 1 + 0.75) / 3
    assert "model at argmax" in svg
    long = np.random.default_rng(0).random(20_000)
    big = pr_curve_svg([("model", long > 0.5, long)], [])
    assert len(big) < 80_000  # long curves are thinned
