"""The structure a task family exposes to structured pruning: groups of units and the slices that hold them.

A *group* is one kind of unit in one layer (an attention head, an FFN neuron, a conv channel, an MLP hidden
unit) together with every parameter slice that belongs to a unit: the rows that produce it and the columns
that consume it. Tasks describe their models' groups (`Task.prunable_groups`); `compress/prune.py` scores
and removes units without knowing any architecture. These types live here, below both, because the layering
rule forbids tasks from importing compress.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["Group", "Member", "sequential_groups"]


@dataclass
class Member:
    """One parameter (or buffer) slice set of a group: `module.<attr>` indexed along `dim`."""

    module: nn.Module
    attr: str  # "weight", "bias", "running_mean", "running_var"
    dim: int  # the axis that indexes units
    unit: int = 1  # consecutive elements per unit along `dim` (head size; h*w of a flattened channel)


@dataclass
class Group:
    """`n` units of one layer and every slice that belongs to them."""

    name: str
    n: int  # units
    members: list[Member] = field(default_factory=list)
    # kept counts are rounded to a multiple of this (SIMD kernels run odd widths slowly); 1 for attention heads,
    # whose count only changes how many (T, T) score matrices there are
    align: int = 8
    # called after units were removed, to update derived attributes a module reads at run time (head counts)
    after: Callable[[], None] | None = None

    def tensors(self) -> list[tuple[Member, torch.Tensor]]:
        """Members whose tensor exists (a layer built with bias=False has no bias slice)."""
        out = []
        for m in self.members:
            t = getattr(m.module, m.attr, None)
            if t is not None:
                out.append((m, t))
        return out


def sequential_groups(seq: list[nn.Module], tail: nn.Linear | None, tail_unit: int, kind: type[nn.Module],
                      prefix: str) -> list[Group]:
    """Units of every `kind` layer (Conv2d / Linear) in a flat module list: its output rows, the batch-norm
    that follows, and the input columns of the next `kind` layer (or of `tail` for the last one; with no
    tail the last layer is the output layer and keeps its units)."""
    positions = [i for i, m in enumerate(seq) if isinstance(m, kind)]
    groups = []
    for j, i in enumerate(positions):
        layer = seq[i]
        nxt = seq[positions[j + 1]] if j + 1 < len(positions) else tail
        if nxt is None:
            break
        g = Group(f"{prefix}{j}", layer.weight.shape[0], [Member(layer, "weight", 0), Member(layer, "bias", 0)])
        for m in seq[i + 1 : positions[j + 1] if j + 1 < len(positions) else len(seq)]:
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                g.members += [Member(m, a, 0) for a in ("weight", "bias", "running_mean", "running_var")]
        g.members.append(Member(nxt, "weight", 1, tail_unit if nxt is tail else 1))
        groups.append(g)
    return groups
