"""What a compressor is. Two kinds, so that they chain (`distill+int8`):

- model compressors (`stage = "model"`: prune, distill) make a new, smaller PyTorch model from the run's
  model; it is exported and checked for fp32 parity like any export;
- graph compressors (`stage = "graph"`: int8, fp16) rewrite a package's ONNX graph; their parity figures
  are against the package they started from, and their cost shows in the frontier's accuracy column.

A compressor knows no architecture: what it needs from a model family it asks the task through the hooks
it names in `needs` (`Task.prunable_groups`, `Task.make_student`). A family without a hook is refused by
`check` before any work. Adding a compressor is one module with a `@register_compressor` class.
"""

from __future__ import annotations

from abc import ABC
from pathlib import Path
from typing import Any, ClassVar, Literal

from torch import nn

from shipml._console import Reporter
from shipml.compress._registry import get_compressor_class, list_compressors
from shipml.config import CompressConfig
from shipml.errors import ConfigError
from shipml.export import ExportContext
from shipml.runtime import Package
from shipml.tasks.base import Task
from shipml.training import fit

__all__ = ["Compressor", "fine_tune"]


def fine_tune(ctx: ExportContext, task: Task, model: nn.Module, workdir: Path, reporter: Reporter,
              **update: Any) -> nn.Module:
    """Train `model` (a pruned model, a student) on the run's data with the run's recipe changed by `update`;
    checkpoints only at epoch ends, in `workdir` (a scratch folder the caller removes)."""
    cfg = ctx.run.config.train.model_copy(update={"checkpoint_every": None, **update})
    return fit(task, ctx.data, cfg, workdir, seed=ctx.run.config.seed, reporter=reporter, model=model).model


class Compressor(ABC):
    name: ClassVar[str]
    stage: ClassVar[Literal["model", "graph"]]
    needs: ClassVar[tuple[str, ...]] = ()  # the Task hooks this method calls; a task lacking one is refused

    def __init__(self, cfg: CompressConfig | None = None) -> None:
        self.cfg = cfg or CompressConfig()

    @classmethod
    def supports(cls, task: Task | type[Task]) -> bool:
        """Whether the task family can be compressed at all (`Task.compressible`) and implements every hook this
        method needs."""
        return task.compressible and all(task.implements(hook) for hook in cls.needs)

    def check(self, task: Task) -> None:
        """Raise ConfigError, naming the methods that do apply, when this method cannot apply to `task`."""
        if not task.compressible:
            raise ConfigError(f"task {task.name!r} does not support {self.name}: the compression frontier scores "
                              "variants on labelled test rows, and a generator's outputs are new images; export the "
                              "fp32 package (`shipml export`) instead")
        missing = [h for h in self.needs if not task.implements(h)]
        if missing:
            usable = [n for n in list_compressors() if get_compressor_class(n).supports(task)]
            raise ConfigError(f"task {task.name!r} does not support {self.name} (it has no Task.{missing[0]} hook); "
                              f"use {' or '.join(usable) or 'no compression'}")

    def recipe(self, ctx: ExportContext) -> dict[str, Any]:
        """What this step's result depends on besides its parent package: a variant on disk is reused only
        when this is unchanged. Overridden by every method that reads settings."""
        return {"step": self.name}

    def make_model(self, ctx: ExportContext, workdir: Path, reporter: Reporter) -> tuple[nn.Module, Task,
                                                                                          dict[str, Any]]:
        """(new model, the task it runs under, params on record); model compressors only."""
        raise NotImplementedError

    def make_graph(self, ctx: ExportContext, parent: Package, out: Path, reporter: Reporter) -> dict[str, Any]:
        """Write the rewritten ONNX graph of `parent` to `out`; returns params on record. Graph compressors only."""
        raise NotImplementedError
