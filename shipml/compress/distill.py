"""Knowledge distillation: a smaller student trained on the run's model's soft labels plus the true labels.

The student is the task family's (`Task.make_student`): a transformer with fewer layers, initialised from
alternate teacher layers (for MiniLM-L6 a 3-layer student from layers 1, 3, 5) and the teacher's
embeddings and head; a CNN or MLP of `width` times the teacher's width, trained from scratch. Loss (Hinton et al. 2015):
    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * cross-entropy(student, y)
(regression: alpha * MSE(student, teacher) + (1 - alpha) * MSE(student, y)). The teacher's outputs are
computed once for every row before training, so each step costs one student forward/backward.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from shipml._console import Reporter
from shipml.compress._registry import register_compressor
from shipml.compress.base import Compressor, fine_tune
from shipml.config import DistillConfig
from shipml.export import ExportContext
from shipml.tasks.base import ClassificationTask, Task
from shipml.training import predict_outputs, resolve_precision

__all__ = ["Distill", "distillation_task", "kl_to_teacher", "teacher_outputs"]


def teacher_outputs(teacher: nn.Module, task: Task, ctx: ExportContext) -> torch.Tensor:
    """The teacher's raw outputs (logits / standardised values) for every row of the data set."""
    precision = resolve_precision(ctx.run.config.train, task)
    return predict_outputs(teacher, task, ctx.inputs, np.arange(len(ctx.data.y())), precision=precision).float()


def distillation_task(task: Task, teacher: torch.Tensor, cfg: DistillConfig) -> Task:
    """A copy of `task` whose targets carry the teacher's outputs and whose loss is the distillation loss."""
    base = type(task)
    temp, alpha = cfg.temperature, cfg.alpha

    class Distilled(base):  # type: ignore[valid-type, misc]
        def encode_targets(self, y: np.ndarray) -> torch.Tensor:
            own = base.encode_targets(self, y).float().reshape(len(y), 1)
            return torch.cat([own, teacher], dim=1)  # (N, 1 + outputs)

        def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            own, soft = targets[:, 0], targets[:, 1:]
            out = outputs.float()
            if isinstance(self, ClassificationTask):
                hard = base.loss(self, out, own.long())
                kl = F.kl_div(F.log_softmax(out / temp, -1), F.log_softmax(soft / temp, -1), log_target=True,
                              reduction="batchmean")
                return alpha * temp**2 * kl + (1 - alpha) * hard
            return alpha * F.mse_loss(out, soft) + (1 - alpha) * base.loss(self, out, own)

    student = Distilled.__new__(Distilled)
    student.__dict__.update(task.__dict__)
    return student


def kl_to_teacher(student: nn.Module, task: Task, ctx: ExportContext, teacher: torch.Tensor, idx: np.ndarray,
                  temperature: float = 1.0) -> float:
    """Mean KL(teacher || student) over rows `idx`: how far the student is from the teacher's soft labels."""
    out = predict_outputs(student, task, ctx.inputs, idx)
    t = F.log_softmax(teacher[torch.as_tensor(idx)] / temperature, -1)
    return float(F.kl_div(F.log_softmax(out / temperature, -1), t, log_target=True, reduction="batchmean"))


@register_compressor("distill")
class Distill(Compressor):
    """A smaller student trained on the teacher's soft labels and the true labels."""

    stage = "model"
    needs = ("make_student",)

    def recipe(self, ctx: ExportContext) -> dict[str, Any]:
        return {"step": self.name, "config": self.cfg.distill.model_dump(mode="json"),
                "train": ctx.run.config.train.model_dump(mode="json")}

    def make_model(self, ctx: ExportContext, workdir: Path, reporter: Reporter) -> tuple[nn.Module, Task,
                                                                                          dict[str, Any]]:
        dc, train = self.cfg.distill, ctx.run.config.train
        torch.manual_seed(ctx.run.config.seed)  # a student built from scratch starts from the same weights
        model, task, info = ctx.task.make_student(ctx.run.model, dc)
        reporter.info("distill: computing the teacher's outputs on every row")
        soft = teacher_outputs(ctx.run.model, ctx.task, ctx)
        epochs = dc.epochs or train.epochs
        trained = fine_tune(ctx, distillation_task(task, soft, dc), model, workdir, reporter, epochs=epochs,
                            lr=train.lr * dc.lr_scale)
        params = {**info, "temperature": dc.temperature, "alpha": dc.alpha, "epochs": epochs,
                  "params": sum(p.numel() for p in trained.parameters()),
                  "teacher_params": sum(p.numel() for p in ctx.run.model.parameters())}
        return trained.float().eval(), task, params
