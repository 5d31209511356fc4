"""Structured pruning: remove whole attention heads and FFN neurons, CNN channels, MLP hidden units.

Unstructured sparsity leaves every matrix its size and the latency unchanged; removing rows and columns
makes every matmul smaller. A *group* is one kind of unit (a head, a neuron, a channel) together with all
the parameter slices that belong to it (the rows producing it, the columns consuming it); the task family
describes its model's groups (`Task.prunable_groups`, types in `shipml/tasks/structure.py`). Units are
scored by first-order Taylor importance, (sum over the group's weights of weight x gradient)^2 averaged
over a few training batches (Molchanov et al. 2019), the lowest `ratio` of each group is removed, and
the model is fine-tuned briefly to recover.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shipml._console import Reporter
from shipml.compress._registry import register_compressor
from shipml.compress.base import Compressor, fine_tune
from shipml.errors import ConfigError
from shipml.export import ExportContext
from shipml.tasks.base import Task
from shipml.tasks.structure import Group, Member

__all__ = ["Prune", "keep_count", "prune_model", "taylor_scores"]


def _unit_sum(t: torch.Tensor, m: Member, n: int) -> torch.Tensor:
    """Sum a tensor over everything but the unit axis: (..., n*unit, ...) -> (n,)."""
    return t.movedim(m.dim, 0).reshape(n, -1).sum(1)


def taylor_scores(model: nn.Module, task: Task, ctx: ExportContext, groups: list[Group], batches: int,
                  batch_size: int, seed: int) -> list[np.ndarray]:
    """Per group, per unit: mean over batches of (sum of weight x gradient over the unit's slices)^2."""
    data, inputs = ctx.data, ctx.inputs
    targets = task.encode_targets(data.y())
    train_idx = data.indices("train")
    gen = torch.Generator().manual_seed(seed)
    order = train_idx[torch.randperm(len(train_idx), generator=gen).numpy()]
    scores = [np.zeros(g.n) for g in groups]
    model.eval()  # no dropout: the score is about the weights, not a random mask
    frozen = [p for p in model.parameters() if not p.requires_grad]  # model.freeze_layers: scored all the same
    for p in frozen:
        p.requires_grad_(True)
    done = 0
    for b in range(min(batches, max(1, len(order) // batch_size))):
        idx = torch.as_tensor(order[b * batch_size : (b + 1) * batch_size])
        model.zero_grad(set_to_none=True)
        loss = task.loss(model(**task.make_batch(inputs, idx, train=False, gen=gen)), targets[idx])
        loss.backward()
        for k, g in enumerate(groups):
            s = torch.zeros(g.n, dtype=torch.float64)
            for m, t in g.tensors():
                if isinstance(t, nn.Parameter) and t.grad is not None:
                    s += _unit_sum((t.grad * t.detach()).double(), m, g.n)
            scores[k] += (s**2).numpy()
        done += 1
    model.zero_grad(set_to_none=True)
    for p in frozen:
        p.requires_grad_(False)
    return [s / max(done, 1) for s in scores]


def keep_count(n: int, ratio: float, align: int = 8) -> int:
    """Units to keep. Channel and neuron counts are rounded to a multiple of 8 (for n >= 16): SIMD kernels
    run odd widths far slower (measured: a CNN pruned from 32/64 to 22/45 channels ran 4x *slower* in
    onnxruntime than the unpruned one; at 24/48 it runs faster)."""
    k = max(1, n - round(ratio * n))
    if align > 1 and n >= 2 * align:
        aligned = round(k / align) * align
        if 0 < aligned < n:  # rounding must not undo the pruning (or remove everything)
            k = aligned
    return k


def _apply(group: Group, keep: torch.Tensor) -> None:
    for m, t in group.tensors():
        idx = (keep[:, None] * m.unit + torch.arange(m.unit)).reshape(-1)
        new = t.detach().index_select(m.dim, idx).clone()
        if isinstance(t, nn.Parameter):
            setattr(m.module, m.attr, nn.Parameter(new, requires_grad=t.requires_grad))
        else:
            m.module._buffers[m.attr] = new
    for m in group.members:
        mod = m.module
        if isinstance(mod, nn.Linear):
            mod.out_features, mod.in_features = mod.weight.shape
        elif isinstance(mod, nn.Conv2d):
            mod.out_channels, mod.in_channels = mod.weight.shape[:2]
        elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            mod.num_features = mod.weight.shape[0]


def prune_model(groups: list[Group], scores: list[np.ndarray], ratio: float) -> dict[str, Any]:
    """Remove the least important `ratio` of each group's units from their model, in place; returns
    {group: [kept, of]}."""
    if not 0 < ratio < 1:
        raise ConfigError(f"compress.prune.ratio: {ratio} must be between 0 and 1 (exclusive), e.g. 0.3")
    if not groups:
        raise ConfigError("this model has nothing structured pruning can remove (no hidden layers, channels or "
                          "heads); use int8 or distill instead")
    kept = {}
    for g, s in zip(groups, scores, strict=True):
        k = keep_count(g.n, ratio, g.align)
        keep = torch.as_tensor(np.sort(np.argsort(-s, kind="stable")[:k]))
        _apply(g, keep)
        kept[g.name] = [k, g.n]
    if all(k == n for k, n in kept.values()):
        raise ConfigError(f"compress.prune.ratio: {ratio} removes no unit from any layer (the widest has "
                          f"{max(n for _, n in kept.values())}); raise it")
    for g in groups:
        if g.after is not None:
            g.after()
    return kept


@register_compressor("prune")
class Prune(Compressor):
    """Structured pruning by Taylor importance + a short recovery fine-tune."""

    stage = "model"
    needs = ("prunable_groups",)

    def recipe(self, ctx: ExportContext) -> dict[str, Any]:
        return {"step": self.name, "config": self.cfg.prune.model_dump(mode="json"),
                "train": ctx.run.config.train.model_dump(mode="json")}

    def make_model(self, ctx: ExportContext, workdir: Path, reporter: Reporter) -> tuple[nn.Module, Task,
                                                                                          dict[str, Any]]:
        pc, train = self.cfg.prune, ctx.run.config.train
        model = copy.deepcopy(ctx.run.model).float()
        task = ctx.task
        from shipml.export.package import example_batch

        groups = task.prunable_groups(model, example_batch(ctx))
        before = sum(p.numel() for p in model.parameters())
        scores = taylor_scores(model, task, ctx, groups, pc.importance_batches, train.batch_size, ctx.run.config.seed)
        kept = prune_model(groups, scores, pc.ratio)
        after = sum(p.numel() for p in model.parameters())
        reporter.info(f"prune: {before:,} -> {after:,} parameters ({1 - after / before:.0%} fewer)")
        if pc.recovery_epochs:
            model = fine_tune(ctx, task, model, workdir, reporter, epochs=pc.recovery_epochs, lr=train.lr * pc.lr_scale,
                              warmup_steps=min(train.warmup_steps, 20))
        params = {"ratio": pc.ratio, "importance": "taylor", "importance_batches": pc.importance_batches,
                  "recovery_epochs": pc.recovery_epochs, "params_before": before, "params_after": after, "kept": kept}
        return model.float().eval(), task, params
