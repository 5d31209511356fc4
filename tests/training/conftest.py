"""Shared by the training tests: a small real table (breast cancer, 569 rows) and a fast training recipe."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from shipml.config import TrainConfig
from shipml.data.dataset import CleaningLog, Dataset


@pytest.fixture(scope="session")
def cancer() -> Dataset:
    """~70/15/15 train/val/test, the split drawn once from a fixed seed."""
    d = load_breast_cancer(as_frame=True)
    frame = d.frame.rename(columns={"target": "label"})
    frame["label"] = frame["label"].map(dict(enumerate(d.target_names)))
    split = np.random.default_rng(0).choice(np.array(["train", "val", "test"]), size=len(frame), p=[0.7, 0.15, 0.15])
    feats = [c for c in frame.columns if c != "label"]
    return Dataset("table", frame, "label", feats, [], split, "fp", CleaningLog(), classes=["benign", "malignant"])


@pytest.fixture
def resplit() -> Callable[[Dataset, np.ndarray], Dataset]:
    """A function: `data` with another split column (no validation rows, an exact number of training rows)."""

    def make(data: Dataset, split: np.ndarray) -> Dataset:
        return Dataset(data.kind, data.frame, data.target, data.features, [], split, "fp", CleaningLog(),
                       classes=data.classes)

    return make


@pytest.fixture
def train_cfg() -> Callable[..., TrainConfig]:
    """A factory: a few quick fp32 epochs, single-threaded (deterministic), every checkpoint kept."""

    def make(**kw: object) -> TrainConfig:
        base = {"epochs": 4, "batch_size": 32, "lr": 3e-3, "checkpoint_every": 5, "keep_checkpoints": 50,
                "precision": "fp32", "threads": 1}
        return TrainConfig.model_validate(base | kw)

    return make
