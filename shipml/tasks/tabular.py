"""tabular-classification and tabular-regression: an MLP over scaled numbers and categorical embeddings.

Preprocessing is learned from the training split and stored as JSON: per numeric column its
median (imputation), mean and std (scaling); per categorical column its category list (index 0 is
"unknown or missing", so unseen values at prediction time are handled, not crashed on).
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from shipml.config import DistillConfig, MLPConfig
from shipml.core.values import category_text
from shipml.data.dataset import Dataset
from shipml.runtime.preprocess import table_arrays
from shipml.tasks._registry import register_task
from shipml.tasks.base import ClassificationTask, RegressionTask, Task, Tensors
from shipml.tasks.structure import Group, sequential_groups

__all__ = ["MLP", "TabularClassification", "TabularRegression"]


class MLP(nn.Module):
    """[numeric features | one embedding per categorical column] -> hidden layers -> outputs
    (+ an optional linear path from the inputs straight to the outputs)."""

    def __init__(self, n_numeric: int, cardinalities: list[int], n_out: int, cfg: MLPConfig) -> None:
        super().__init__()
        dims = [cfg.embedding_dim or min(16, (k + 1) // 2 + 1) for k in cardinalities]
        self.embeddings = nn.ModuleList(nn.Embedding(k + 1, d) for k, d in zip(cardinalities, dims, strict=True))
        layers: list[nn.Module] = []
        width = n_numeric + sum(dims)
        for h in cfg.hidden:
            layers.append(nn.Linear(width, h))
            if cfg.batchnorm:
                layers.append(nn.BatchNorm1d(h))
            layers += [nn.ReLU(inplace=True), nn.Dropout(cfg.dropout)]
            width = h
        layers.append(nn.Linear(width, n_out))
        self.net = nn.Sequential(*layers)
        self.skip = nn.Linear(n_numeric + sum(dims), n_out) if cfg.skip else None

    def forward(self, num: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        # num: (B, n_numeric) float, cat: (B, n_categorical) int64 -> (B, n_out)
        parts = [num] + [emb(cat[:, i]) for i, emb in enumerate(self.embeddings)]
        x = torch.cat(parts, dim=1)
        return self.net(x) if self.skip is None else self.net(x) + self.skip(x)


class _Tabular(Task):
    data_kind = "table"
    default_model = MLPConfig

    def _fit_columns(self, data: Dataset) -> dict[str, Any]:
        train = data.frame.iloc[data.indices("train")]
        numeric, categorical = [], []
        for col in data.features:
            if col in data.categorical:
                counts = category_text(train[col]).dropna().value_counts()
                # most frequent first, ties by name: deterministic
                cats = sorted(counts.index, key=lambda c: (-counts[c], c))
                categorical.append({"name": col, "categories": list(cats)})
            else:
                values = pd.to_numeric(train[col], errors="coerce").astype(np.float64)
                median = float(values.median()) if values.notna().any() else 0.0
                filled = values.fillna(median)
                std = float(filled.std(ddof=0))
                numeric.append(
                    {"name": col, "median": median, "mean": float(filled.mean()), "std": std if std > 1e-12 else 1.0}
                )
        return {"numeric": numeric, "categorical": categorical}

    def encode(self, frame: pd.DataFrame | None, images: np.ndarray | None) -> Tensors:
        if frame is None:
            raise ValueError("tabular tasks need a frame of features")
        needed = [c["name"] for c in self.prep["numeric"] + self.prep["categorical"]]
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(f"missing feature columns: {missing}; the model needs {needed}")
        # the runtime's own conversion (not a copy of it): a package sees exactly these numbers
        num, cat = table_arrays(frame, self.prep["numeric"], self.prep["categorical"])
        return {"num": torch.from_numpy(num), "cat": torch.from_numpy(cat)}

    def _build(self, n_out: int) -> nn.Module:
        assert isinstance(self.model_cfg, MLPConfig)
        cards = [len(c["categories"]) for c in self.prep["categorical"]]
        return MLP(len(self.prep["numeric"]), cards, n_out, self.model_cfg)

    # ------------------------------------------------------------------ architecture hooks
    def prunable_groups(self, model: nn.Module, example: Tensors) -> list[Group]:
        """Every hidden layer's units (the output layer keeps its units; the linear skip path reads the
        inputs, not hidden units, so it is untouched)."""
        assert isinstance(model, MLP)
        return sequential_groups(list(model.net), None, 1, nn.Linear, "hidden")

    def make_student(self, model: nn.Module, cfg: DistillConfig) -> tuple[nn.Module, Task, dict[str, Any]]:
        """The same MLP with `cfg.width` times the hidden units per layer, from scratch."""
        assert isinstance(self.model_cfg, MLPConfig)
        hidden = [max(1, round(h * cfg.width)) for h in self.model_cfg.hidden]
        student = copy.copy(self)
        student.model_cfg = self.model_cfg.model_copy(update={"hidden": hidden})
        return student.build_model(pretrained=False), student, {"hidden": hidden,
                                                                 "teacher_hidden": list(self.model_cfg.hidden)}


@register_task("tabular-classification")
class TabularClassification(ClassificationTask, _Tabular):
    """Rows of numeric/categorical features -> class probabilities."""

    recipe: ClassVar[dict[str, Any]] = {  # bench/foundation.py: breast cancer, 5 seeds
        "model": {"arch": "mlp", "hidden": [64], "dropout": 0.2},
        "train": {"epochs": 100, "batch_size": 32, "lr": 1e-3, "weight_decay": 1e-2},
    }

    def _fit_preprocessing(self, data: Dataset) -> dict[str, Any]:
        return self._fit_columns(data)

    def build_model(self, pretrained: bool = True) -> nn.Module:
        return self._build(self.n_classes)


@register_task("tabular-regression")
class TabularRegression(RegressionTask, _Tabular):
    """Rows of numeric/categorical features -> one real value."""

    recipe: ClassVar[dict[str, Any]] = {  # bench/foundation.py: diabetes, 5 seeds, against the ridge baseline
        "model": {"arch": "mlp", "hidden": [64], "dropout": 0.3, "skip": True},
        "train": {"epochs": 200, "batch_size": 32, "lr": 1e-3, "weight_decay": 1e-2},
    }

    def _fit_preprocessing(self, data: Dataset) -> dict[str, Any]:
        return {**self._fit_columns(data), "target": self._target_stats(data)}

    def build_model(self, pretrained: bool = True) -> nn.Module:
        return self._build(1)
