"""The optimisation recipe does what the config says: L1, gradient clipping, gradient accumulation, LR schedules.

Each test fails when its feature is ignored: L1 and clipping are checked against a hand computation of one
plain-SGD step, accumulation against one big batch, schedules against their formulas."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from shipml.config import MLPConfig, TrainConfig
from shipml.data.dataset import Dataset
from shipml.tasks import create_task
from shipml.training import fit
from shipml.training.optim import lr_factor

Weights = dict[str, torch.Tensor]


def _one_sgd_step(data: Dataset, cfg: TrainConfig, tmp: Path) -> tuple[Weights, Weights]:
    """Weights before and after exactly one optimizer step of plain SGD (no momentum, constant lr) over the
    whole training split, from a fixed start; dropout masks are the same in every call (fit seeds torch)."""
    task = create_task("tabular-classification", model=MLPConfig(hidden=[16])).fit(data)
    torch.manual_seed(0)
    start = task.build_model()
    before = {k: v.clone() for k, v in start.state_dict().items()}
    res = fit(task, data, cfg, tmp, seed=0, model=copy.deepcopy(start))
    assert res.steps == 1
    return before, {k: v.clone() for k, v in res.model.state_dict().items()}


@pytest.fixture
def sgd_step_cfg(train_cfg: Callable[..., TrainConfig]) -> Callable[..., TrainConfig]:
    """One batch holding every training row, one epoch: one step; plain SGD so the update is -lr * grad."""
    return lambda **kw: train_cfg(**({"epochs": 1, "batch_size": 4096, "optimizer": "sgd", "momentum": 0.0,
                                      "lr": 0.5, "schedule": "constant"} | kw))


def test_l1_adds_lr_times_l1_times_sign_to_the_weight_update(cancer: Dataset, sgd_step_cfg: Callable[..., TrainConfig],
                                                             tmp_path: Path) -> None:
    """d(l1 * sum|w|)/dw = l1 * sign(w) on weight matrices, nothing on biases: the update differs by exactly that."""
    l1, lr = 1e-2, 0.5
    w0, plain = _one_sgd_step(cancer, sgd_step_cfg(), tmp_path / "plain")
    _, with_l1 = _one_sgd_step(cancer, sgd_step_cfg(l1=l1), tmp_path / "l1")
    for k, w in w0.items():
        expected = plain[k] - lr * l1 * torch.sign(w) if w.ndim > 1 else plain[k]
        torch.testing.assert_close(with_l1[k], expected, rtol=0, atol=1e-6, msg=f"{k}: L1 not applied as l1*sign(w)")


def test_grad_clip_scales_the_update_to_the_clip_norm(cancer: Dataset, sgd_step_cfg: Callable[..., TrainConfig],
                                                      tmp_path: Path) -> None:
    """With SGD the update is -lr * g; clipping to c turns it into -lr * g * c / |g| when |g| > c."""
    clip, lr = 0.01, 0.5
    w0, free = _one_sgd_step(cancer, sgd_step_cfg(), tmp_path / "free")
    _, clipped = _one_sgd_step(cancer, sgd_step_cfg(grad_clip=clip), tmp_path / "clipped")
    grad = {k: (w0[k] - free[k]) / lr for k in w0}  # the unclipped gradient, recovered from the update
    norm = math.sqrt(sum(float(g.pow(2).sum()) for g in grad.values()))
    assert norm > 5 * clip, "the gradient is too small for this test to see clipping"
    for k in w0:
        torch.testing.assert_close(clipped[k], w0[k] - lr * grad[k] * clip / norm, rtol=1e-4, atol=1e-7,
                                   msg=f"{k}: update not clipped to norm {clip}")


def test_grad_accum_of_k_batches_equals_one_batch_k_times_larger(
        cancer: Dataset, resplit: Callable[[Dataset, np.ndarray], Dataset], train_cfg: Callable[..., TrainConfig],
        tmp_path: Path) -> None:
    """No dropout or batch-norm, 384 training rows (12 batches of 32 = 4 of 96, no ragged last batch), plain
    mean losses: 3 accumulated batches of 32 give the same gradient as one batch of 96, up to float rounding."""
    split = np.array(["test"] * len(cancer.split), dtype=object)
    split[np.random.default_rng(1).permutation(len(split))[:384]] = "train"  # no val: the result is the last step
    data = resplit(cancer, split)
    runs = {}
    for name, batch_size, accum in (("accum", 32, 3), ("big", 96, 1)):
        task = create_task("tabular-classification", model=MLPConfig(hidden=[16], dropout=0.0)).fit(data)
        cfg = train_cfg(epochs=3, batch_size=batch_size, grad_accum=accum, optimizer="sgd", lr=0.05)
        runs[name] = fit(task, data, cfg, tmp_path / name, seed=0)
    assert runs["accum"].steps == runs["big"].steps == 3 * 4
    big = runs["big"].model.state_dict()
    for k, v in runs["accum"].model.state_dict().items():
        torch.testing.assert_close(v, big[k], rtol=1e-5, atol=1e-6, msg=f"{k}: accumulation differs from one batch")


@pytest.mark.parametrize("schedule", ["linear", "cosine", "step"])
def test_logged_lr_follows_the_schedule(schedule: str, cancer: Dataset, train_cfg: Callable[..., TrainConfig],
                                        tmp_path: Path) -> None:
    """metrics.jsonl logs, at each step, the lr the scheduler has set after that step: lr * factor(step)."""
    task = create_task("tabular-classification").fit(cancer)
    cfg = train_cfg(epochs=3, schedule=schedule, warmup_steps=5, step_size=7, gamma=0.5)
    res = fit(task, cancer, cfg, tmp_path, seed=0)
    recs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = [(r["step"], r["lr"]) for r in recs if r["kind"] == "train"]
    assert [s for s, _ in logged] == list(range(1, res.steps + 1))  # 12 steps an epoch: every step is logged
    for step, lr in logged:
        assert lr == pytest.approx(cfg.lr * lr_factor(step, res.steps, cfg), rel=1e-12, abs=0.0), f"step {step}"
    assert len({lr for _, lr in logged}) > 5  # it did change


_SCHEDULE = TrainConfig(lr=1.0, warmup_steps=10, step_size=20, gamma=0.5)


@pytest.mark.parametrize(("schedule", "step", "expected"), [
    *[(s, 0, 0.1) for s in ("constant", "linear", "cosine", "step")],  # warm-up: (step + 1) / warmup_steps
    *[(s, 9, 1.0) for s in ("constant", "linear", "cosine", "step")],
    *[(s, 10, 1.0) for s in ("constant", "linear", "cosine", "step")],  # first step after warm-up: the peak
    ("constant", 55, 1.0), ("linear", 55, 0.5), ("cosine", 55, 0.5), ("step", 55, 0.5**2),  # half way
    ("constant", 99, 1.0), ("linear", 99, 1 / 90), ("cosine", 99, math.sin(math.pi / 180) ** 2), ("step", 99, 0.5**4),
    ("linear", 150, 0.0), ("cosine", 150, 0.0), ("step", 150, 0.5**7),  # past the end: clamped / still decaying
])
def test_lr_schedules(schedule: str, step: int, expected: float) -> None:
    """lr_factor at warm-up, peak, half way and the end of 100 steps (10 warm-up), against the closed forms:
    linear 1 - p, cosine (1 + cos(pi p)) / 2, step gamma ** ((step - warmup) // step_size), p = (step - 10) / 90."""
    cfg = _SCHEDULE.model_copy(update={"schedule": schedule})
    assert lr_factor(step, 100, cfg) == pytest.approx(expected, rel=1e-9, abs=1e-15)
