"""Read a run directory for the report, tolerating whatever is missing or unreadable.

The report must work on any finished (or crashed) run, long after training, from the files alone;
so every file is optional here, and a broken one becomes a note in the report instead of a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

__all__ = ["RunFiles", "dig", "read_run"]


def dig(value: Any, *keys: str) -> Any:
    """value[k1][k2]...; None as soon as a level is missing or not a dict (old or hand-edited files)."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


@dataclass
class RunFiles:
    """What a run directory holds; None (or empty) where a file is missing or unreadable."""

    run_dir: Path
    config_text: str | None = None  # config.yaml verbatim
    config: dict[str, Any] = field(default_factory=dict)  # config.yaml parsed (not validated)
    run: dict[str, Any] = field(default_factory=dict)  # run.json
    data: dict[str, Any] | None = None  # data.json (Dataset.summary())
    records: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl
    metrics: dict[str, Any] | None = None  # metrics.json
    predictions: pd.DataFrame | None = None  # predictions.parquet (test split)
    frontier: dict[str, Any] | None = None  # frontier.json (`shipml compress`)
    tune: dict[str, Any] | None = None  # tune.json: how `shipml tune` chose this run
    problems: dict[str, str] = field(default_factory=dict)  # file name -> why it could not be read

    def evaluate_option(self, name: str, default: Any) -> Any:
        """A value of the config's `evaluate` section, or `default` when absent or malformed."""
        value = dig(self.config, "evaluate", name)
        return default if value is None or isinstance(value, bool) else value

    @property
    def task_kind(self) -> str | None:
        """The task kind ("classification" or "regression"): run.json's, or else read off metrics.json."""
        kind = self.run.get("task_kind")
        if kind in ("classification", "regression"):
            return str(kind)
        test = dig(self.metrics, "test")
        if isinstance(test, dict) and "accuracy" in test:
            return "classification"
        if isinstance(test, dict) and "r2" in test:
            return "regression"
        return None

    def missing(self, name: str) -> str:
        """Why a file's content is not available, in a few words for the report."""
        return self.problems.get(name, f"{name} not found in the run directory")


def _json_object(path: Path) -> dict[str, Any]:
    value = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _records(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl, skipping torn or foreign lines (a crashed run can end mid-line)."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def read_run(run_dir: Path) -> RunFiles:
    """Load every file the report uses; each failure is recorded in `problems`, never raised."""
    run_dir = Path(run_dir)
    files = RunFiles(run_dir=run_dir)

    def attempt(name: str, load: Callable[[Path], Any]) -> Any:
        path = run_dir / name
        if not path.is_file():
            return None
        try:
            return load(path)
        except Exception as err:  # any unreadable file degrades to a note in its section
            files.problems[name] = f"{name} could not be read ({type(err).__name__}: {err})"
            return None

    files.config_text = attempt("config.yaml", lambda p: p.read_text(encoding="utf-8", errors="replace"))
    if files.config_text is not None:
        try:
            parsed = yaml.safe_load(files.config_text)
        except yaml.YAMLError:
            parsed = None
        files.config = parsed if isinstance(parsed, dict) else {}
    files.run = attempt("run.json", _json_object) or {}
    files.data = attempt("data.json", _json_object)
    files.records = attempt("metrics.jsonl", _records) or []
    files.metrics = attempt("metrics.json", _json_object)
    files.predictions = attempt("predictions.parquet", pd.read_parquet)
    files.frontier = attempt("frontier.json", _json_object)
    files.tune = attempt("tune.json", _json_object)
    return files
