"""PyTorch model -> ONNX file, with dynamic batch (and sequence) axes.

What is traced is the task's choice (`Task.export_module`): the model itself, or a rewrite with the same
weights (BERT-family text models are traced as the classic BERT graph; why: shipml/tasks/bert.py). The
parity check in `export.package` guards any rewrite: it compares the exported graph with the original
module on the real test split.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from shipml.errors import ExportError
from shipml.tasks.base import Task, Tensors

__all__ = ["OPSET", "export_onnx"]

OPSET = 17


class _Keywords(nn.Module):
    """Positional inputs (what the exporter passes) -> the keyword arguments our models take."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, args, strict=True)))


def export_onnx(model: nn.Module, task: Task, example: Tensors, path: Path) -> tuple[list[str], str]:
    """Write `model` (fp32, eval mode) as ONNX to `path`; `example` is one batch from `task.make_batch`.
    Returns (the traced input names, output name); the exporter drops an input the graph does not use
    (`cat` without categorical columns), which `build_package` reads off the file."""
    names = list(example)
    output = "logits" if task.kind == "classification" else "value"
    model = model.float().eval()
    graph = task.export_module(model)
    wrapped = _Keywords(graph, names).eval()
    axes: dict[str, dict[int, str]] = {n: ({0: "batch", 1: "sequence"} if n in task.sequence_inputs else {0: "batch"})
                                       for n in names}
    axes[output] = {0: "batch"}
    args = tuple(example[n].contiguous() for n in names)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes are not the user's
            torch.onnx.export(wrapped, args, str(path), input_names=names, output_names=[output],
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    except Exception as err:  # the exporter raises many types; all mean "this model cannot be exported"
        raise ExportError(f"cannot export the {type(model).__name__} model to ONNX: {err}") from None
    return names, output
