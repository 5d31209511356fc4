"""Which way each metric points, and which one a task kind leads with: one owner for the training loop
(early stopping), evaluation and the compression frontier (`--target`, relative drops)."""

from __future__ import annotations

from typing import Literal

__all__ = ["HEADLINE", "LOWER_IS_BETTER", "metric_direction"]

# the metric the report, the CLI summary and the frontier lead with, per task kind
HEADLINE: dict[str, str] = {"classification": "accuracy", "regression": "r2"}
# quality metrics where a smaller value is better (every other quality metric: larger is better)
LOWER_IS_BETTER = frozenset({"loss", "mse", "mae", "rmse", "log_loss", "ece"})


def metric_direction(name: str) -> Literal["max", "min"]:
    """"min" for losses and errors, "max" for everything else (accuracy, F1, AUC, R²)."""
    return "min" if name in LOWER_IS_BETTER else "max"
