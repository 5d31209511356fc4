"""What every task family provides: preprocessing it learns, a model builder, batching, loss, predictions,
and the architecture hooks export and compression call (`export_module`, `prunable_groups`, `make_student`).

A task is fitted on the training split (`fit`), after which everything it learned is JSON
(`assets()`), so a saved model can be rebuilt without the training data and without pickles.
"""

from __future__ import annotations

import copy
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, TypeAdapter
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score
from torch import nn

from shipml.config import Config, DistillConfig, ModelConfig, TaskConfig
from shipml.core.metric_names import HEADLINE
from shipml.data.dataset import Dataset
from shipml.errors import ConfigError
from shipml.runtime.predict import decide
from shipml.tasks.structure import Group

__all__ = ["ClassificationTask", "RegressionTask", "Task"]

Tensors = dict[str, torch.Tensor]
_MODEL_ADAPTER: TypeAdapter[Any] = TypeAdapter(ModelConfig)


class Task(ABC):
    """Base class of a task family. Subclasses register themselves with `@register_task`."""

    name: ClassVar[str]
    kind: ClassVar[Literal["classification", "regression", "generation"]]
    data_kind: ClassVar[Literal["table", "images", "text"]]
    default_model: ClassVar[type[BaseModel]]
    # what the report, the CLI summary and the compression frontier lead with (core.metric_names.HEADLINE);
    # early stopping ranks checkpoints by validation loss unless train.early_stopping.metric names another
    headline: ClassVar[str]
    # inputs whose second axis varies per batch (token sequences): exported with a dynamic "sequence" axis
    sequence_inputs: ClassVar[tuple[str, ...]] = ()
    prefers_bf16: ClassVar[bool] = False  # measured: bf16 autocast speeds this family up on CPUs with bf16
    # what `shipml init` proposes for this family: {"task": {...}, "model": {...}, "train": {...}}
    recipe: ClassVar[dict[str, Any]] = {}
    # whether `shipml compress` applies (its frontier scores variants on labelled test rows)
    compressible: ClassVar[bool] = True
    # which loop trains it: "supervised" (training/loop.py) or "adversarial" (training/gan.py: two networks)
    trainer: ClassVar[Literal["supervised", "adversarial"]] = "supervised"

    def __init__(self, model: BaseModel | None = None, task: TaskConfig | None = None) -> None:
        self.model_cfg: BaseModel = model if model is not None else self.default_model()
        if not isinstance(self.model_cfg, self.default_model):
            allowed = self.default_model.model_fields["arch"].default
            raise ConfigError(
                f"model.arch: {getattr(self.model_cfg, 'arch', '?')!r} does not fit task {self.name!r}; "
                f"use arch: {allowed}"
            )
        self.task_cfg = task if task is not None else TaskConfig(name=self.name)
        self.classes: list[str] | None = None
        self.prep: dict[str, Any] = {}  # learned preprocessing, JSON-able; empty until fit

    # ------------------------------------------------------------------ construction and learned state
    @classmethod
    def from_config(cls, cfg: Config) -> Task:
        return cls(model=cfg.model, task=cfg.task)

    @property
    def fitted(self) -> bool:
        return bool(self.prep)

    def fit(self, data: Dataset) -> Task:
        """Learn preprocessing (and the label set) from the training split only."""
        if data.kind != self.data_kind:
            raise ConfigError(
                f"task {self.name!r} needs {self.data_kind} data but {data.source!r} is {data.kind} data; "
                f"pick a task for it (see `shipml tasks`)"
            )
        self.classes = list(data.classes) if data.classes is not None else None
        self.prep = self._fit_preprocessing(data)
        return self

    @abstractmethod
    def _fit_preprocessing(self, data: Dataset) -> dict[str, Any]: ...

    def assets(self) -> dict[str, Any]:
        """Everything needed to rebuild this fitted task and its model, as JSON."""
        if not self.fitted:
            raise RuntimeError("task is not fitted")
        return {
            "task": self.name,
            "kind": self.kind,
            "model": self.model_cfg.model_dump(mode="json"),
            "task_config": self.task_cfg.model_dump(mode="json"),
            "classes": self.classes,
            "preprocessing": self.prep,
        }

    def runtime_preprocessing(self, email: dict[str, Any] | None) -> dict[str, Any]:
        """The learned preprocessing as the runtime reads it (signature.json "preprocessing"): a copy of
        `prep` without what only training uses; `email` is the run's data.email settings (text tasks)."""
        prep = json.loads(json.dumps(self.prep))  # a deep copy
        prep.pop("decision", None)  # the spec carries it on its own
        return prep

    def spec(self, email: dict[str, Any] | None = None) -> dict[str, Any]:
        """What the network's inputs and outputs mean, for `shipml.runtime.Predictor`: the one input path
        that `Run.predict`, packages (signature.json) and the server share."""
        if not self.fitted:
            raise RuntimeError("task is not fitted")
        classification = self.kind == "classification"
        transform = ({"kind": "softmax"} if classification
                     else {"kind": "affine", "mean": self.prep["target"]["mean"], "std": self.prep["target"]["std"]})
        return {"task": self.name, "kind": self.kind, "data_kind": self.data_kind, "classes": self.classes,
                "output_transform": transform, "decision": self.prep.get("decision") if classification else None,
                "preprocessing": self.runtime_preprocessing(email)}

    def with_decision(self, decision: dict[str, Any] | None) -> Task:
        """A copy of this fitted task with another decision rule (scoring returns one; nothing is mutated)."""
        other = copy.copy(self)
        other.prep = {**self.prep, "decision": decision}
        return other

    @classmethod
    def from_assets(cls, assets: dict[str, Any]) -> Task:
        task = cls(
            model=_MODEL_ADAPTER.validate_python(assets["model"]),
            task=TaskConfig.model_validate(assets["task_config"]),
        )
        task.classes = assets.get("classes")
        task.prep = assets["preprocessing"]
        return task

    # ------------------------------------------------------------------ data to tensors
    @abstractmethod
    def encode(self, frame: pd.DataFrame | None, images: np.ndarray | None) -> Tensors:
        """Turn rows (a frame of features, or (N,H,W,C) uint8 images) into model inputs, all at once."""

    def encode_dataset(self, data: Dataset) -> Tensors:
        return self.encode(data.frame, data.images)

    @abstractmethod
    def encode_targets(self, y: np.ndarray) -> torch.Tensor:
        """Dataset targets (class indices or values) to what the loss expects."""

    def make_batch(self, inputs: Tensors, idx: torch.Tensor, *, train: bool, gen: torch.Generator) -> Tensors:
        """Select one batch; training batches may be augmented using `gen` (and only `gen`)."""
        return {k: v[idx] for k, v in inputs.items()}

    # ------------------------------------------------------------------ model, loss, predictions
    @abstractmethod
    def build_model(self, pretrained: bool = True) -> nn.Module:
        """A fresh model; its forward takes the keys of `encode()` as keyword arguments. `pretrained=False`
        skips loading pretrained weights (when a trained state dict is loaded right after)."""

    def param_groups(self, model: nn.Module) -> list[tuple[list[nn.Parameter], float]]:
        """Parameters with their learning-rate scale (e.g. layer-wise decay); default: one group at 1."""
        return [(list(model.parameters()), 1.0)]

    def arrange_epoch(self, inputs: Tensors, order: np.ndarray, batch_size: int, gen: torch.Generator) -> np.ndarray:
        """The training order of one epoch, given a shuffled `order` (e.g. grouped by length); default: as is."""
        return order

    def inference_order(self, inputs: Tensors, idx: np.ndarray) -> np.ndarray:
        """A permutation of positions in `idx`: the order rows are batched in at inference (e.g. by length).
        Outputs are put back in `idx` order."""
        return np.arange(len(idx))

    # ------------------------------------------------------------------ files beside task.json
    def files(self) -> dict[str, bytes]:
        """Preprocessing assets too large or too foreign for task.json (e.g. tokenizer.json), by file name."""
        return {}

    def load_files(self, folder: Path) -> None:  # noqa: B027 (an optional hook: most tasks have no files)
        """Read back what `files()` wrote into `folder`."""

    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def postprocess(self, outputs: torch.Tensor) -> np.ndarray:
        """Model outputs to predictions: (N, C) probabilities, or (N,) values in the target's units."""

    @abstractmethod
    def quick_metrics(self, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
        """Cheap validation metrics for early stopping and learning curves (no CIs)."""

    def param_count(self, model: nn.Module) -> int:
        return sum(p.numel() for p in model.parameters())

    # ------------------------------------------------------------------ architecture hooks (export, compress)
    # Export and compression call these instead of inspecting model classes, so a family's architecture is
    # known in one place. A compressor declares the hooks it needs (`Compressor.needs`); a family that does not
    # override one is refused by that compressor before any work (`implements`).

    # int8: "static" calibrates fixed activation ranges on training rows (CNNs, MLPs: fastest kernels);
    # "dynamic" quantizes activations per batch (transformers: ranges vary with sequence length and content)
    int8_activations: ClassVar[Literal["static", "dynamic"]] = "static"

    @classmethod
    def implements(cls, hook: str) -> bool:
        """Whether this family overrides the architecture hook `hook` (e.g. "prunable_groups")."""
        if not callable(getattr(Task, hook, None)):
            raise ValueError(f"{hook!r} is not a Task hook")
        return getattr(cls, hook) is not getattr(Task, hook)

    def export_module(self, model: nn.Module) -> nn.Module:
        """The module traced to ONNX for `model` (same weights, same outputs; the parity check compares them);
        default: the model itself. A family overrides it when its eager graph exports badly."""
        return model

    def prunable_groups(self, model: nn.Module, example: Tensors) -> list[Group]:
        """The units structured pruning may remove from `model`, with every slice that holds them; `example` is
        one batch of inputs (for shapes that depend on the input, such as a CNN's last feature map)."""
        raise ConfigError(f"task {self.name!r} does not describe prunable units (Task.prunable_groups); "
                          "it cannot be pruned")

    def make_student(self, model: nn.Module, cfg: DistillConfig) -> tuple[nn.Module, Task, dict[str, Any]]:
        """A smaller model to distil `model` into: (untrained or teacher-initialised student, the task it runs
        under, params on record). Called under the run's seed, so a student built from scratch is reproducible."""
        raise ConfigError(f"task {self.name!r} does not define a student model (Task.make_student); "
                          "it cannot be distilled")


class ClassificationTask(Task):
    kind = "classification"
    headline = HEADLINE["classification"]

    @property
    def n_classes(self) -> int:
        assert self.classes is not None
        return len(self.classes)

    def fit(self, data: Dataset) -> Task:
        super().fit(data)
        self.prep["class_weights"] = None
        if self.task_cfg.class_weights == "balanced":
            counts = np.bincount(data.y("train"), minlength=self.n_classes).astype(np.float64)
            weights = len(data.indices("train")) / (self.n_classes * np.maximum(counts, 1))
            self.prep["class_weights"] = [float(w) for w in weights]
        return self

    def encode_targets(self, y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(y, dtype=np.int64))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        w = self.prep.get("class_weights")
        weight = torch.tensor(w, dtype=torch.float32) if w else None
        return nn.functional.cross_entropy(outputs.float(), targets, weight=weight)

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """Predicted class indices: argmax, or the tuned threshold on the positive class (binary tasks)."""
        return decide(proba, self.prep.get("decision"))

    def postprocess(self, outputs: torch.Tensor) -> np.ndarray:
        return torch.softmax(outputs.float(), dim=-1).numpy()

    def quick_metrics(self, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
        labels = pred.argmax(axis=1)
        return {
            "accuracy": float(accuracy_score(y, labels)),
            "macro_f1": float(f1_score(y, labels, average="macro", labels=range(pred.shape[1]), zero_division=0)),
        }



class RegressionTask(Task):
    """Targets are standardised with training statistics; predictions are returned in original units."""

    kind = "regression"
    headline = HEADLINE["regression"]

    def _target_stats(self, data: Dataset) -> dict[str, float]:
        y = data.y("train")
        std = float(y.std())
        return {"mean": float(y.mean()), "std": std if std > 0 else 1.0}

    def encode_targets(self, y: np.ndarray) -> torch.Tensor:
        t = self.prep["target"]
        return torch.as_tensor((np.asarray(y, dtype=np.float64) - t["mean"]) / t["std"], dtype=torch.float32)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(outputs.float().squeeze(-1), targets)

    def postprocess(self, outputs: torch.Tensor) -> np.ndarray:
        t = self.prep["target"]
        return outputs.float().squeeze(-1).numpy().astype(np.float64) * t["std"] + t["mean"]

    def quick_metrics(self, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
        return {"r2": float(r2_score(y, pred)), "mae": float(mean_absolute_error(y, pred))}
