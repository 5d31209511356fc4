"""Scoring a trained run: the decision threshold, metrics with CIs for model and baseline, predictions.

Writes `metrics.json` and `predictions.parquet` into the run directory (docs/runs.md); the report
and later stages read those files. The baseline gets the same treatment as the model: fitted on the
same split and, for a tuned binary threshold, its threshold tuned on the same validation rows.
"""

from __future__ import annotations

import io
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from shipml._console import Reporter
from shipml.config import Config
from shipml.core.files import atomic_write_bytes
from shipml.data.dataset import Dataset
from shipml.errors import ConfigError
from shipml.evaluate import (
    ThresholdWarning,
    binary_rates,
    classification_metrics,
    fit_baseline,
    regression_metrics,
    tune_threshold,
)
from shipml.runtime.predict import decide
from shipml.tasks import ClassificationTask, Task
from shipml.training import predict_outputs

__all__ = ["check_scoring", "choose_decision", "score"]

TEXT_CHARS = 2000  # how much of each test text predictions.parquet keeps (for the report's error analysis)


def check_scoring(cfg: Config, task: Task) -> None:
    """Settings scoring will need, checked once the task knows its classes and before any training: a typo
    in task.threshold.positive must not cost a whole training run."""
    th = cfg.task.threshold
    if th.positive is None or not isinstance(task, ClassificationTask) or task.classes is None:
        return
    if th.positive not in task.classes:
        raise ConfigError(f"task.threshold.positive: {th.positive!r} is not a class of this data set; classes: "
                          f"{task.classes}. Set it to one of them (the class the threshold is tuned for)")
    if th.strategy != "argmax" and task.n_classes != 2:
        raise ConfigError(f"task.threshold.strategy: {th.strategy!r} tunes a binary decision, but the data set has "
                          f"{task.n_classes} classes; use strategy: argmax")


def _positive(task: ClassificationTask, data: Dataset, cfg: Config) -> int:
    assert task.classes is not None
    wanted = cfg.task.threshold.positive
    if wanted is not None:
        check_scoring(cfg, task)
        return task.classes.index(wanted)
    counts = np.bincount(data.y("train"), minlength=2)
    return int(np.argmin(counts)) if counts[0] != counts[1] else 1  # the rarer class: spam, fraud, defect


def choose_decision(y_val: np.ndarray, proba_val: np.ndarray | None, pos: int, cfg: Config) -> dict[str, Any]:
    """The decision rule for a binary classifier: argmax, or a threshold tuned on validation."""
    th = cfg.task.threshold
    if th.strategy == "argmax" or proba_val is None or not len(y_val):
        return {"strategy": "argmax", "positive": pos}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ThresholdWarning)
        t = tune_threshold((y_val == pos).astype(int), proba_val[:, pos], th.strategy, max_fpr=th.max_fpr)
    notes = [str(w.message) for w in caught if issubclass(w.category, ThresholdWarning)]
    return {"strategy": th.strategy, "positive": pos, "threshold": float(t), "max_fpr": th.max_fpr} | (
        {"notes": notes} if notes else {})


def score(run_dir: Path, cfg: Config, task: Task, model: Any, data: Dataset, *, tune: bool,
          reporter: Reporter, test: bool = True) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Compute and write metrics.json and predictions.parquet. With `tune`, a binary classifier's decision
    threshold is (re)tuned on validation. Returns the metrics and the decision rule they were scored with
    (the caller saves it with the task when it differs from `task.prep["decision"]`; `task` is not changed).
    `test=False` scores validation only (no baseline, no predictions): a tuning trial must not see the test
    split, which is scored once, for the chosen configuration (shipml/tune)."""
    if task.kind == "generation":  # no labels to predict: the samples are judged (shipml/judge.py)
        from shipml.judge import score_generation

        return score_generation(run_dir, cfg, task, model, data, reporter=reporter), None
    ev = cfg.evaluate
    inputs = task.encode_dataset(data)
    proba = {s: task.postprocess(predict_outputs(model, task, inputs, data.indices(s)))
             for s in (("val", "test") if test else ("val",)) if len(data.indices(s))}
    binary = isinstance(task, ClassificationTask) and task.n_classes == 2
    decision = task.prep.get("decision") if binary else None
    if binary and tune:
        assert isinstance(task, ClassificationTask)
        decision = choose_decision(data.y("val"), proba.get("val"), _positive(task, data, cfg), cfg)
        if decision["strategy"] != cfg.task.threshold.strategy:
            reporter.warn("no validation split: the decision threshold stays at argmax")
        for note in decision.get("notes", []):
            reporter.warn(note)

    def metrics_of(y: np.ndarray, p: np.ndarray, dec: dict[str, Any] | None) -> dict[str, Any]:
        if task.kind == "classification":
            assert task.classes is not None
            return classification_metrics(y, p, task.classes, labels=decide(p, dec), n_bootstrap=ev.bootstrap,
                                          confidence=ev.confidence, seed=cfg.seed)
        return regression_metrics(y, p, n_bootstrap=ev.bootstrap, confidence=ev.confidence, seed=cfg.seed)

    out: dict[str, Any] = {s: metrics_of(data.y(s), p, decision) for s, p in proba.items()}
    if decision and decision["strategy"] != "argmax":
        out["decision"] = _decision_report(decision, data, proba, task)
    baseline_cols: tuple[np.ndarray, dict[str, Any] | None] | None = None
    if ev.baseline != "none" and test:
        t0 = time.perf_counter()
        base = fit_baseline(data, ev.baseline, seed=cfg.seed)
        base_pred = base.proba if task.kind == "classification" else base.pred
        base_decision = None
        if decision and decision["strategy"] != "argmax":
            base_decision = choose_decision(data.y("val"), base.val_proba, decision["positive"], cfg)
        out["baseline"] = {"name": base.name, "test": metrics_of(data.y("test"), base_pred, base_decision),
                           "fit_seconds": round(time.perf_counter() - t0, 2), "notes": base.notes}
        if base_decision and base_decision["strategy"] != "argmax":
            probs = {"test": base_pred} | ({"val": base.val_proba} if base.val_proba is not None else {})
            out["baseline"]["decision"] = _decision_report(base_decision, data, probs, task)
        baseline_cols = (base_pred, base_decision)
    atomic_write_bytes(run_dir / "metrics.json", (json.dumps(out, indent=2) + "\n").encode())
    if "test" in proba:
        _write_predictions(run_dir, task, data, proba["test"], decision, baseline_cols)
    return out, decision


def _decision_report(decision: dict[str, Any], data: Dataset, proba: dict[str, np.ndarray],
                     task: Task) -> dict[str, Any]:
    assert task.classes is not None
    pos = decision["positive"]
    rep = {k: v for k, v in decision.items() if k != "positive"} | {"positive": task.classes[pos]}
    for split, p in proba.items():
        rep[split] = binary_rates((data.y(split) == pos).astype(int), p[:, pos], decision["threshold"])
    return rep


def _write_predictions(run_dir: Path, task: Task, data: Dataset, pred: np.ndarray, decision: dict[str, Any] | None,
                       baseline: tuple[np.ndarray, dict[str, Any] | None] | None) -> None:
    idx = data.indices("test")
    df = pd.DataFrame({"row": idx})
    classes = task.classes
    if classes is not None:
        df["y_true"] = data.frame[data.target].iloc[idx].astype(str).to_numpy()
        decided = decide(pred, decision)
        df["y_pred"] = [classes[i] for i in decided]
        df["confidence"] = pred[np.arange(len(pred)), decided]  # probability of the label given
        for j, c in enumerate(classes):
            df[f"proba:{c}"] = pred[:, j]
    else:
        df["y_true"] = data.y("test")
        df["y_pred"] = pred
    if baseline is not None:
        bp, bdec = baseline
        if classes is not None:
            df["baseline:y_pred"] = [classes[i] for i in decide(bp, bdec)]
            for j, c in enumerate(classes):
                df[f"baseline:proba:{c}"] = bp[:, j]
        else:
            df["baseline:y_pred"] = bp
    if "source" in data.frame.columns:
        df["source"] = data.frame["source"].iloc[idx].astype(str).to_numpy()
    if data.images is not None:
        df["image_png"] = [_thumbnail(data.images[i]) for i in idx]
    elif data.kind == "text":
        df["text"] = [str(t)[:TEXT_CHARS] for t in data.frame[data.features[0]].iloc[idx]]
    else:  # all columns at once: added one by one, a 50,000-column table took quadratic time
        feats = data.frame[list(data.features)].iloc[idx].reset_index(drop=True)
        df = pd.concat([df, feats.add_prefix("feature:")], axis=1)
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(run_dir / "predictions.parquet", buf.getvalue())


def _thumbnail(img: np.ndarray, max_side: int = 64) -> bytes:
    """A small PNG of one (H, W, C) uint8 image, for the report."""
    pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
    pil.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
