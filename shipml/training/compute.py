"""What the machine gives a fit, decided once at its start and said in the run log: the intra-op threads
(shipml/core/cpu.py chooses them) and the arithmetic (bf16 only where the CPU has it natively). Both loops,
the supervised one (loop.py) and the adversarial one (gan.py), call these."""

from __future__ import annotations

import torch

from shipml._console import Reporter
from shipml.config import TrainConfig
from shipml.core.cpu import ThreadPlan, plan_threads, usable_cores
from shipml.core.machine import cpu_kind, cpu_supports_bf16
from shipml.tasks.base import Task
from shipml.training.checkpoint import Checkpoint

__all__ = ["precision_note", "resolve_precision", "set_threads"]


def resolve_precision(cfg: TrainConfig, task: Task) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    return "bf16" if task.prefers_bf16 and cpu_supports_bf16() else "fp32"


def precision_note(cfg: TrainConfig, task: Task, precision: str) -> str:
    """Why this precision, for the run log: a result depends on it and on the CPU that chose it."""
    if cfg.precision != "auto":
        return f"precision {precision} (set by hand); CPU: {cpu_kind()}"
    if precision == "bf16":
        return f"precision bf16 (auto: native bf16 on this CPU, {cpu_kind()})"
    why = "no native bf16 on this CPU" if task.prefers_bf16 else f"{task.name} is measured faster in fp32"
    return f"precision fp32 (auto: {why}; CPU: {cpu_kind()})"


def set_threads(cfg: TrainConfig, ckpt: Checkpoint | None, reporter: Reporter, *, share: int = 1) -> ThreadPlan:
    """Choose and set torch's intra-op threads for this fit (core/cpu.py says how), and log the choice.

    A resumed fit takes the count its checkpoint was trained with (unless set by hand): a reduction split
    over another number of threads adds in another order, and the resume promises the same bits."""
    saved = ckpt.state.get("threads") if ckpt is not None else None
    if cfg.threads is None and isinstance(saved, int) and saved >= 1:
        plan = ThreadPlan(saved, usable_cores(), 0.0, "as the checkpoint was trained, for a bit-identical resume")
    else:
        plan = plan_threads(cfg.threads, share=share)
    torch.set_num_threads(plan.threads)
    reporter.info(f"threads: {plan.threads} ({plan.reason})")
    return plan
