"""Optimizers and learning-rate schedules from `TrainConfig`, and their state as tensors + JSON."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from shipml.config import TrainConfig

__all__ = ["build_optimizer", "build_scheduler", "lr_factor", "optimizer_state", "restore_optimizer"]


def build_optimizer(
    model: nn.Module, cfg: TrainConfig, scaled: list[tuple[list[nn.Parameter], float]] | None = None
) -> torch.optim.Optimizer:
    """AdamW or SGD; weight decay is not applied to biases and normalisation parameters. `scaled` gives
    (parameters, lr scale) groups, e.g. for layer-wise LR decay; frozen parameters are left out."""
    groups = []
    for params, scale in scaled or [(list(model.parameters()), 1.0)]:
        trainable = [p for p in params if p.requires_grad]
        decay = [p for p in trainable if p.ndim > 1]
        no_decay = [p for p in trainable if p.ndim <= 1]
        groups += [
            {"params": ps, "weight_decay": wd, "lr": cfg.lr * scale}
            for ps, wd in ((decay, cfg.weight_decay), (no_decay, 0.0))
            if ps
        ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def lr_factor(step: int, total: int, cfg: TrainConfig) -> float:
    """Multiplier of the peak LR at optimizer step `step` of `total`."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        return cfg.gamma ** ((step - cfg.warmup_steps) // cfg.step_size)
    span = max(1, total - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    if cfg.schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine


def build_scheduler(
    opt: torch.optim.Optimizer, total_steps: int, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total_steps, cfg))


def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON (everything else)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}/{k}"] = v
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        pid, _, name = key.partition("/")
        state.setdefault(int(pid), {})[name] = v
    for pid, st in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(st)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
