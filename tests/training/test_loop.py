"""The training loop: learns, early-stops, keeps the best weights, and resumes to the bit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from sklearn.datasets import load_breast_cancer

from shipml.config import TrainConfig
from shipml.data.dataset import CleaningLog, Dataset
from shipml.tasks import create_task
from shipml.training import fit, predict_outputs
from shipml.training.checkpoint import list_checkpoints
from shipml.training.optim import lr_factor


@pytest.fixture(scope="module")
def cancer() -> Dataset:
    d = load_breast_cancer(as_frame=True)
    frame = d.frame.rename(columns={"target": "label"})
    frame["label"] = frame["label"].map(dict(enumerate(d.target_names)))
    split = np.random.default_rng(0).choice(np.array(["train", "val", "test"]), size=len(frame), p=[0.7, 0.15, 0.15])
    feats = [c for c in frame.columns if c != "label"]
    return Dataset("table", frame, "label", feats, [], split, "fp", CleaningLog(), classes=["benign", "malignant"])


def _cfg(**kw: object) -> TrainConfig:
    base = {"epochs": 4, "batch_size": 32, "lr": 3e-3, "checkpoint_every": 5, "keep_checkpoints": 50,
            "precision": "fp32", "threads": 1}
    return TrainConfig.model_validate(base | kw)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_fit_learns_and_logs(cancer: Dataset, tmp_path: Path) -> None:
    task = create_task("tabular-classification").fit(cancer)
    res = fit(task, cancer, _cfg(), tmp_path, seed=0)
    inputs = task.encode_dataset(cancer)
    proba = task.postprocess(predict_outputs(res.model, task, inputs, cancer.indices("test")))
    acc = (proba.argmax(1) == cancer.y("test")).mean()
    assert acc > 0.93
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in records} == {"train", "val"}
    assert sum(r["kind"] == "val" for r in records) == 4  # one validation per epoch
    assert res.best is not None and res.best["metric"] == "loss"
    assert list_checkpoints(tmp_path / "checkpoints")


def test_best_checkpoint_is_the_final_model(cancer: Dataset, tmp_path: Path) -> None:
    task = create_task("tabular-classification").fit(cancer)
    res = fit(task, cancer, _cfg(epochs=6), tmp_path, seed=0)
    best = load_file(str(tmp_path / "best.safetensors"))
    for k, v in res.model.state_dict().items():
        assert torch.equal(v, best[k])


def test_early_stopping(cancer: Dataset, tmp_path: Path) -> None:
    task = create_task("tabular-classification").fit(cancer)
    cfg = _cfg(epochs=50, lr=1e-6, early_stopping={"metric": "loss", "patience": 2, "min_delta": 1.0})
    res = fit(task, cancer, cfg, tmp_path, seed=0)
    assert res.stopped_early
    assert res.steps < 50 * 13


def test_resume_from_any_checkpoint_is_bit_identical(cancer: Dataset, tmp_path: Path) -> None:
    """Train once; then, for several checkpoints, pretend the process died right after it and resume."""
    task = create_task("tabular-classification").fit(cancer)
    full = fit(task, cancer, _cfg(), tmp_path / "full", seed=3)
    reference = _weights(full.model)
    ckpts = list_checkpoints(tmp_path / "full" / "checkpoints")
    assert len(ckpts) >= 5
    for keep in (ckpts[-1], ckpts[len(ckpts) // 2], ckpts[1]):
        run = tmp_path / f"from-{keep.name}"
        shutil.copytree(tmp_path / "full", run)
        for p in list_checkpoints(run / "checkpoints"):
            if p.name > keep.name:
                p.unlink()
        resumed = fit(task, cancer, _cfg(), run, seed=3, resume=True)
        assert resumed.resumed_from is not None
        for k, v in _weights(resumed.model).items():
            assert torch.equal(v, reference[k]), f"{k} differs after resuming from {keep.name}"
        assert _log(run) == _log(tmp_path / "full"), "the resumed metrics log differs"


def _log(run: Path) -> list[dict[str, object]]:
    """metrics.jsonl without the timing field (wall-clock speed differs between processes)."""
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "samples_per_s"} for r in recs]


def test_grad_accum_l1_clip_and_schedules_run(cancer: Dataset, tmp_path: Path) -> None:
    task = create_task("tabular-classification").fit(cancer)
    cfg = _cfg(epochs=2, grad_accum=3, l1=1e-4, grad_clip=1.0, schedule="step", step_size=2, optimizer="sgd",
               weight_decay=1e-3)
    res = fit(task, cancer, cfg, tmp_path, seed=0)
    assert res.steps == 2 * int(np.ceil(np.ceil(len(cancer.indices("train")) / 32) / 3))


def test_one_process_can_train_with_both_precisions(cancer: Dataset, tmp_path: Path) -> None:
    task = create_task("tabular-classification").fit(cancer)
    a = fit(task, cancer, _cfg(epochs=1, precision="bf16"), tmp_path / "a", seed=0)
    b = fit(task, cancer, _cfg(epochs=1, precision="fp32"), tmp_path / "b", seed=0)
    assert (a.precision, b.precision) == ("bf16", "fp32")


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine", "step"])
def test_lr_schedules(schedule: str) -> None:
    cfg = TrainConfig(schedule=schedule, warmup_steps=10, step_size=20, gamma=0.5)
    assert lr_factor(0, 100, cfg) == pytest.approx(0.1)
    assert lr_factor(9, 100, cfg) == pytest.approx(1.0)
    end = lr_factor(99, 100, cfg)
    expected = {"constant": 1.0, "linear": 1 / 90, "cosine": 0.0003, "step": 0.5**4}[schedule]
    assert end == pytest.approx(expected, abs=1e-3)


def test_no_val_split_means_last_weights(cancer: Dataset, tmp_path: Path) -> None:
    data = Dataset(cancer.kind, cancer.frame, cancer.target, cancer.features, [],
                   np.where(cancer.split == "val", "train", cancer.split), "fp", CleaningLog(), classes=cancer.classes)
    task = create_task("tabular-classification").fit(data)
    res = fit(task, data, _cfg(epochs=1), tmp_path, seed=0)
    assert res.best is None
    assert not (tmp_path / "best.safetensors").exists()
    assert isinstance(pd.read_json(tmp_path / "metrics.jsonl", lines=True), pd.DataFrame)
