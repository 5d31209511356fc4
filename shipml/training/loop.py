"""The training loop, on HF Accelerate, resumable to the bit.

Data is encoded once into tensors and batched by index (no DataLoader: on a 2-core box worker
processes cost more than they save). Every source of randomness is explicit and checkpointed: the
epoch order comes from a generator seeded by (seed, epoch), augmentation draws from its own
generator, dropout from torch's global RNG. A resumed run therefore replays exactly the same
batches, augmentations and dropout masks as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from safetensors.torch import load_file, save
from torch import nn

from shipml._console import Reporter
from shipml.config import TrainConfig
from shipml.data.dataset import Dataset
from shipml.errors import TrainError
from shipml.tasks.base import Task, Tensors
from shipml.training.checkpoint import atomic_write_bytes, load_latest, save_checkpoint
from shipml.training.optim import build_optimizer, build_scheduler, optimizer_state, restore_optimizer

__all__ = ["TrainResult", "cpu_supports_bf16", "fit", "predict_outputs", "resolve_precision"]

_MIN_METRICS = ("loss", "mse", "mae", "rmse", "log_loss", "ece")


@dataclass
class TrainResult:
    model: nn.Module  # final weights: the best validation checkpoint, else the last step
    best: dict[str, Any] | None  # {"step", "epoch", "metric", "value"}
    stopped_early: bool
    steps: int
    seconds: float  # wall time of the loop in this process and earlier (resumed) ones
    samples_per_s: float
    precision: str
    resumed_from: int | None  # step of the checkpoint this process started from


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 instructions (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(cfg: TrainConfig, task: Task) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    return "bf16" if task.prefers_bf16 and cpu_supports_bf16() else "fp32"


def _accelerator(mixed_precision: str) -> Accelerator:
    """An Accelerator for this fit. Accelerate keeps its settings in a process-wide singleton that refuses
    a second, different precision; one process may train several models (the Python API, benchmarks,
    HPO), so the per-model part is reset. The process-group part (PartialState) is kept."""
    if AcceleratorState._shared_state and AcceleratorState._shared_state.get("_mixed_precision") != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(cpu=True, mixed_precision=mixed_precision)


def _batches_per_epoch(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 else 0)  # a last batch of one row breaks batch-norm: drop it


def _epoch_order(task: Task, inputs: Tensors, train_idx: np.ndarray, batch_size: int, seed: int,
                 epoch: int) -> np.ndarray:
    """The rows of one epoch in training order: a function of (seed, epoch) only, so a resumed run replays it."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = train_idx[torch.randperm(len(train_idx), generator=g).numpy()]
    return task.arrange_epoch(inputs, order, batch_size, g)


@torch.no_grad()
def predict_outputs(model: nn.Module, task: Task, inputs: Tensors, idx: np.ndarray, *, batch_size: int = 256,
                    precision: str = "fp32") -> torch.Tensor:
    """Raw model outputs for rows `idx`, in eval mode, batch by batch (float32)."""
    was_training = model.training
    model.eval()
    outs = []
    gen = torch.Generator()  # unused for eval batches, required by the signature
    idx = np.asarray(idx)
    perm = task.inference_order(inputs, idx)  # e.g. by length, so batches pad little
    order = idx[perm]
    for start in range(0, len(order), batch_size):
        b = torch.as_tensor(order[start : start + batch_size])
        batch = task.make_batch(inputs, b, train=False, gen=gen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            outs.append(model(**batch).float())
    model.train(was_training)
    if not outs:
        return torch.empty(0)
    out = torch.empty_like(torch.cat(outs))
    out[torch.as_tensor(perm)] = torch.cat(outs)  # back to the order of `idx`
    return out


class _Log:
    """metrics.jsonl: one JSON record per line, appended and flushed as training goes."""

    def __init__(self, path: Path, keep_until_step: int | None) -> None:
        self.path = path
        if keep_until_step is None:
            path.write_text("")
        else:  # resuming: drop what the killed process logged after the checkpoint (and torn lines)
            kept = []
            for line in path.read_text().splitlines() if path.exists() else []:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if rec.get("step", 0) <= keep_until_step:
                    kept.append(line + "\n")
            atomic_write_bytes(path, "".join(kept).encode())
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def write(self, rec: dict[str, Any]) -> None:
        self._f.write(json.dumps(rec) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def fit(task: Task, data: Dataset, cfg: TrainConfig, run_dir: Path, *, seed: int, resume: bool = False,
        reporter: Reporter | None = None, model: nn.Module | None = None) -> TrainResult:
    """Train `task`'s model on `data` (task already fitted); checkpoints and logs go to `run_dir`.

    `model` starts from a given module instead of `task.build_model()` (compression: a pruned model's
    recovery fine-tune, a distillation student); such a fit cannot be resumed."""
    reporter = reporter or Reporter(quiet=True)
    if model is not None and resume:
        raise TrainError("a fit that starts from a given model cannot be resumed; start it again")
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    precision = resolve_precision(cfg, task)
    accelerator = _accelerator("bf16" if precision == "bf16" else "no")

    train_idx, val_idx = data.indices("train"), data.indices("val")
    if len(train_idx) < 2:
        raise TrainError(
            f"the training split has {len(train_idx)} rows; need at least 2 (add data or change data.split)"
        )
    inputs = task.encode_dataset(data)
    targets = task.encode_targets(data.y())
    y_val = data.y("val")

    ckpt_dir, best_path = run_dir / "checkpoints", run_dir / "best.safetensors"
    ckpt, notes = load_latest(ckpt_dir) if resume else (None, [])
    for n in notes:
        reporter.warn(n)
    torch.manual_seed(seed)
    if model is None:
        model = task.build_model(pretrained=ckpt is None)  # a checkpoint replaces the weights (and the RNG) anyway
    optimizer = build_optimizer(model, cfg, task.param_groups(model))
    batches = _batches_per_epoch(len(train_idx), cfg.batch_size)
    steps_per_epoch = math.ceil(batches / cfg.grad_accum)
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = build_scheduler(optimizer, total_steps, cfg)
    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model = accelerator.unwrap_model(model)
    aug_gen = torch.Generator().manual_seed(seed + 1)

    es = cfg.early_stopping
    # validation loss by default: on small validation splits it ranks checkpoints far less noisily than accuracy
    metric = es.metric or ("loss" if len(val_idx) else None)
    mode = es.mode if es.mode != "auto" else ("min" if metric in _MIN_METRICS else "max")
    st: dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0, "best": None, "bad_evals": 0, "stopped": False,
                          "seconds": 0.0, "samples": 0}
    resumed_from = None
    if resume:
        if ckpt is not None:
            raw_model.load_state_dict(ckpt.section("model"))
            restore_optimizer(optimizer.optimizer, ckpt.section("optim"), ckpt.state["optimizer"])
            scheduler.load_state_dict(ckpt.state["scheduler"])
            torch.set_rng_state(ckpt.tensors["rng/torch"])
            aug_gen.set_state(ckpt.tensors["rng/aug"])
            st = ckpt.state["loop"]
            resumed_from = st["step"]
            reporter.info(f"resuming from {ckpt.path.name} (step {st['step']}, epoch {st['epoch']})")
        else:
            reporter.warn("no usable checkpoint found; starting from the beginning")
    log = _Log(run_dir / "metrics.jsonl", keep_until_step=st["step"] if resumed_from is not None else None)
    if resumed_from is None:
        best_path.unlink(missing_ok=True)

    def checkpoint() -> None:
        opt_tensors, opt_meta = optimizer_state(optimizer.optimizer)
        tensors = {f"model/{k}": v for k, v in raw_model.state_dict().items()}
        tensors |= {f"optim/{k}": v for k, v in opt_tensors.items()}
        tensors["rng/torch"] = torch.get_rng_state()
        tensors["rng/aug"] = aug_gen.get_state()
        state = {"loop": st, "optimizer": opt_meta, "scheduler": scheduler.state_dict()}
        save_checkpoint(ckpt_dir, st["step"], tensors, state, keep=cfg.keep_checkpoints)

    def evaluate() -> None:
        if not len(val_idx):
            return
        out = predict_outputs(model, task, inputs, val_idx, precision=precision)
        epoch = round(st["epoch"] + st["batch"] / batches, 4)
        rec: dict[str, Any] = {"kind": "val", "step": st["step"], "epoch": epoch}
        rec["loss"] = float(task.loss(out, targets[torch.as_tensor(val_idx)]))
        rec |= task.quick_metrics(y_val, task.postprocess(out))
        log.write(rec)
        if metric is None:
            return
        if metric not in rec:
            raise TrainError(f"train.early_stopping.metric: {metric!r} is not computed; choose one of "
                             f"{sorted(k for k in rec if k not in ('kind', 'step', 'epoch'))}")
        value, best = rec[metric], st["best"]
        better = best is None or (value > best["value"] + es.min_delta if mode == "max"
                                  else value < best["value"] - es.min_delta)
        if better:
            st["best"] = {"step": st["step"], "epoch": rec["epoch"], "metric": metric, "value": value}
            st["bad_evals"] = 0
            atomic_write_bytes(best_path, save({k: v.contiguous() for k, v in raw_model.state_dict().items()}))
        else:
            st["bad_evals"] += 1
            if es.patience is not None and st["bad_evals"] >= es.patience:
                st["stopped"] = True
        reporter_note[0] = f"val {metric} {value:.4f}"

    reporter_note = [""]
    log_every = max(1, steps_per_epoch // 20)
    model.train()
    t0, window_t, window_n = time.perf_counter(), time.perf_counter(), 0
    seconds_before, samples_before = st["seconds"], st["samples"]
    with reporter.bar("training", total_steps) as bar:
        bar.update(completed=st["step"])
        while st["epoch"] < cfg.epochs and not st["stopped"]:
            order = _epoch_order(task, inputs, train_idx, cfg.batch_size, seed, st["epoch"])
            while st["batch"] < batches and not st["stopped"]:
                first = st["batch"]
                last = min(first + cfg.grad_accum, batches)
                loss_sum = 0.0
                for b in range(first, last):
                    idx = torch.as_tensor(order[b * cfg.batch_size : (b + 1) * cfg.batch_size])
                    batch = task.make_batch(inputs, idx, train=True, gen=aug_gen)
                    with accelerator.autocast():
                        loss = task.loss(model(**batch), targets[idx])
                    if cfg.l1:
                        loss = loss + cfg.l1 * sum(p.abs().sum() for p in raw_model.parameters() if p.ndim > 1)
                    accelerator.backward(loss / (last - first))
                    loss_sum += loss.item()
                    window_n += len(idx)
                    st["samples"] += len(idx)
                if cfg.grad_clip:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                st["step"] += 1
                st["batch"] = last
                epoch_end = st["batch"] >= batches
                if st["step"] % log_every == 0 or epoch_end:
                    now = time.perf_counter()
                    log.write({"kind": "train", "step": st["step"], "epoch": round(st["epoch"] + last / batches, 4),
                               "loss": loss_sum / (last - first), "lr": scheduler.get_last_lr()[0],
                               "samples_per_s": window_n / max(now - window_t, 1e-9)})
                    window_t, window_n = now, 0
                if epoch_end:
                    st["epoch"] += 1
                    st["batch"] = 0
                if (cfg.eval_every and st["step"] % cfg.eval_every == 0) or (epoch_end and not cfg.eval_every):
                    evaluate()
                st["seconds"] = seconds_before + time.perf_counter() - t0
                if epoch_end or (cfg.checkpoint_every and st["step"] % cfg.checkpoint_every == 0) or st["stopped"]:
                    checkpoint()
                bar.update(completed=st["step"], note=reporter_note[0])
                if epoch_end:
                    break
    log.close()
    seconds = seconds_before + time.perf_counter() - t0
    final = accelerator.unwrap_model(model, keep_fp32_wrapper=False)  # plain fp32 forward from here on
    if st["best"] is not None and best_path.exists():
        final.load_state_dict(load_file(str(best_path)))
    done = st["samples"] - samples_before
    rate = done / max(seconds - seconds_before, 1e-9) if done else 0.0
    return TrainResult(model=final.eval(), best=st["best"], stopped_early=st["stopped"], steps=st["step"],
                       seconds=seconds, samples_per_s=rate, precision=precision, resumed_from=resumed_from)
