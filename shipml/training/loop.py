"""The training loop, on HF Accelerate, resumable to the bit.

Data is encoded once into tensors and batched by index (no DataLoader: on a 2-core box worker
processes cost more than they save). Every source of randomness is explicit and checkpointed: the
epoch order comes from a generator seeded by (seed, epoch), augmentation draws from its own
generator, dropout from torch's global RNG. A resumed run therefore replays exactly the same
batches, augmentations and dropout masks as an uninterrupted one.

Several processes (torchrun, `shipml train --nproc N`) run this same loop: `train.batch_size` stays the
global batch, each rank computes its slice of it (`distributed.share`), DDP averages the gradients, so a
step equals the one-process step and the learning rate needs no change. Rank 0 validates, logs, saves and
decides; the others follow its decisions. The loop position is global (step, epoch, global batch), so a
checkpoint resumes under any process count.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedDataParallelKwargs
from safetensors.torch import load_file, save
from torch import nn

from shipml._console import Reporter
from shipml.config import TrainConfig
from shipml.core.files import atomic_write_bytes
from shipml.core.machine import cpu_supports_bf16
from shipml.core.metric_names import metric_direction
from shipml.data.dataset import Dataset
from shipml.errors import TrainError
from shipml.tasks.base import Task, Tensors
from shipml.training.checkpoint import Checkpoint, load_latest, save_checkpoint
from shipml.training.compute import precision_note, resolve_precision, set_threads
from shipml.training.distributed import Group, World, rank_seed, resolve_backend, share, world
from shipml.training.optim import build_optimizer, build_scheduler, optimizer_state, restore_optimizer
from shipml.training.outputs import predict_outputs, to_device
from shipml.training.records import LoopState, MetricsLog

__all__ = ["LoopState", "TrainResult", "cpu_supports_bf16", "fit", "predict_outputs"]


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
    threads_reason: str = ""  # why this many intra-op threads (core/cpu.py), for run.json


def _accelerator(mixed_precision: str, here: World) -> Accelerator:
    """An Accelerator for this fit. Accelerate keeps its settings in a process-wide singleton that refuses
    a second, different precision; one process may train several models (the Python API, benchmarks,
    HPO), so the per-model part is reset. The process-group part (PartialState) is kept. Under torchrun
    Accelerate joins the process group: gloo on CPU, NCCL (one GPU per process) when that backend is chosen;
    a single process trains on CPU, as it always has."""
    if AcceleratorState._shared_state and AcceleratorState._shared_state.get("_mixed_precision") != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)
    cpu = here.size == 1 or resolve_backend() == "gloo"
    # a static graph lets DDP skip parameters the loss never reaches (e.g. a text encoder's pooler) without
    # searching the autograd graph every step, as find_unused_parameters would
    ddp = DistributedDataParallelKwargs(static_graph=True)
    return Accelerator(cpu=cpu, mixed_precision=mixed_precision, kwargs_handlers=[ddp])


def _batches_per_epoch(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 else 0)  # a last batch of one row breaks batch-norm: drop it


def _epoch_order(task: Task, inputs: Tensors, train_idx: np.ndarray, batch_size: int, seed: int,
                 epoch: int) -> np.ndarray:
    """The rows of one epoch in training order: a function of (seed, epoch) only, so a resumed run replays it."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = train_idx[torch.randperm(len(train_idx), generator=g).numpy()]
    return task.arrange_epoch(inputs, order, batch_size, g)


class _Loop:
    """One fit's moving parts and the steps that advance them. Everything that changes from step to step
    lives in the model, optimizer, scheduler, RNGs and `self.state`, and all of it goes into a checkpoint."""

    def __init__(self, task: Task, data: Dataset, cfg: TrainConfig, run_dir: Path, *, seed: int, precision: str,
                 accelerator: Accelerator, group: Group, model: nn.Module | None, pretrained: bool,
                 on_validate: Callable[[dict[str, Any]], None] | None = None, threads: int = 1) -> None:
        self.task, self.cfg, self.seed, self.precision = task, cfg, seed, precision
        self.threads = threads  # recorded in each checkpoint: a resume uses as many
        self.on_validate = on_validate
        self.accelerator, self.group, self.device = accelerator, group, accelerator.device
        self.train_idx, self.val_idx = data.indices("train"), data.indices("val")
        if len(self.train_idx) < 2:
            raise TrainError(
                f"the training split has {len(self.train_idx)} rows; need at least 2 (add data or change data.split)"
            )
        self.inputs = task.encode_dataset(data)
        self.targets = task.encode_targets(data.y())
        self.y_val = data.y("val")
        # rank 0 alone touches these (a follower of a fresh run does not even know the folder)
        self.ckpt_dir, self.best_path, self.log_path = (run_dir / "checkpoints", run_dir / "best.safetensors",
                                                        run_dir / "metrics.jsonl")
        torch.manual_seed(seed)
        if model is None:
            model = task.build_model(pretrained=pretrained)  # a checkpoint replaces the weights (and the RNG) anyway
        optimizer = build_optimizer(model, cfg, task.param_groups(model))
        self.batches = _batches_per_epoch(len(self.train_idx), cfg.batch_size)
        self.steps_per_epoch = math.ceil(self.batches / cfg.grad_accum)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.scheduler = build_scheduler(optimizer, self.total_steps, cfg)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.raw_model = self.accelerator.unwrap_model(self.model)
        self.aug_gen = torch.Generator().manual_seed(seed + 1)
        if not group.main:  # the model is rank 0's (DDP broadcasts it); dropout and augmentation are the rank's own
            self._seed_rank(0)
        es = cfg.early_stopping
        # validation loss by default: on small validation splits it ranks checkpoints far less noisily than accuracy
        self.metric = es.metric or ("loss" if len(self.val_idx) else None)
        self.mode = es.mode if es.mode != "auto" else metric_direction(self.metric or "loss")
        self.state = LoopState()
        self.note = ""  # shown next to the progress bar
        self.log: MetricsLog | None = None

    def _restore(self, ckpt: Checkpoint) -> None:
        """Put weights, optimizer, scheduler, both RNGs and the loop position back as `ckpt` saved them."""
        self.raw_model.load_state_dict(ckpt.section("model"))
        restore_optimizer(self.optimizer.optimizer, ckpt.section("optim"), ckpt.state["optimizer"])
        self.scheduler.load_state_dict(ckpt.state["scheduler"])
        self.state = LoopState.from_json(ckpt.state["loop"])
        rank = self.group.world.rank
        suffix = f"@{rank}" if rank else ""
        if f"rng/torch{suffix}" in ckpt.tensors:  # rank 0's, or this rank's from a run with as many processes
            torch.set_rng_state(ckpt.tensors[f"rng/torch{suffix}"])
            self.aug_gen.set_state(ckpt.tensors[f"rng/aug{suffix}"])
        else:  # a checkpoint from fewer processes: this rank's RNGs start afresh, seeded by where it resumes
            self._seed_rank(self.state.step)

    def _seed_rank(self, step: int) -> None:
        rank = self.group.world.rank
        torch.manual_seed(rank_seed(self.seed, step, rank))
        self.aug_gen.manual_seed(rank_seed(self.seed + 1, step, rank))

    def _step(self, order: np.ndarray) -> tuple[float, int]:
        """One optimizer step over the next `grad_accum` batches of `order`; returns the mean loss and the rows
        seen. A loss that is not finite raises before it reaches the weights (nothing is stepped or saved)."""
        cfg, st, group = self.cfg, self.state, self.group
        first, last = st.batch, min(st.batch + cfg.grad_accum, self.batches)
        loss_sum, rows = 0.0, 0
        for b in range(first, last):
            global_rows = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]  # (B,) the same on every rank
            mine, weight = share(global_rows, group.world.rank, group.size)
            idx = torch.as_tensor(mine)  # (B / processes,)
            batch = to_device(self.task.make_batch(self.inputs, idx, train=True, gen=self.aug_gen), self.device)
            with self.accelerator.autocast():
                data_loss = self.task.loss(self.model(**batch), self.targets[idx].to(self.device))
            loss = data_loss if weight == 1.0 else data_loss * weight
            if cfg.l1:
                loss = loss + cfg.l1 * sum(p.abs().sum() for p in self.raw_model.parameters() if p.ndim > 1)
            if group.size == 1:
                value = loss.item()
            else:  # the global batch's loss, as one process computes it; every rank sees the same value
                local = data_loss.item() * weight if weight else 0.0
                value = group.total(local) / group.size + (loss.item() - data_loss.item() * weight)
            if not math.isfinite(value):
                raise group.stop(self._diverged(value, b))
            # with grad_accum, DDP averages after each batch (averaging is linear, so the sum is the same;
            # its no_sync does not combine with the static graph chosen in _accelerator)
            self.accelerator.backward(loss / (last - first))
            loss_sum += value
            rows += len(global_rows)
        if cfg.grad_clip:
            self.accelerator.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        st.step += 1
        st.batch = last
        st.samples += rows
        return loss_sum / (last - first), rows

    def _diverged(self, value: float, batch: int) -> str:
        """The TrainError message for a loss that went nan/inf: where, and what usually fixes it."""
        cfg, st = self.cfg, self.state
        fixes = [f"lower train.lr (now {cfg.lr:g})"]
        if not cfg.grad_clip:
            fixes.append("set train.grad_clip (e.g. 1.0)")
        fixes.append("check the data for huge or extreme values (e.g. 1e300, a wrongly scaled column)")
        if self.precision == "bf16":
            fixes.append("train with train.precision: fp32 (bf16 has less range and precision)")
        return (f"the training loss became {value} at step {st.step + 1} (epoch {st.epoch + 1} of {cfg.epochs}, "
                f"batch {batch + 1} of {self.batches}); training stopped. Try: " + "; ".join(fixes))

    def _validate(self) -> None:
        """Log validation metrics; track the best value (saving its weights) and early stopping's patience."""
        if not len(self.val_idx):
            return
        assert self.log is not None
        st, es = self.state, self.cfg.early_stopping
        out = predict_outputs(self.raw_model, self.task, self.inputs, self.val_idx, precision=self.precision)
        epoch = round(st.epoch + st.batch / self.batches, 4)
        rec: dict[str, Any] = {"kind": "val", "step": st.step, "epoch": epoch}
        rec["loss"] = float(self.task.loss(out, self.targets[torch.as_tensor(self.val_idx)]))
        rec |= self.task.quick_metrics(self.y_val, self.task.postprocess(out))
        self.log.write(rec)
        if self.on_validate is not None:
            self.on_validate(rec)  # e.g. a tuning trial reports it, and may stop the fit (optuna's TrialPruned)
        if self.metric is None:
            return
        if self.metric not in rec:
            raise TrainError(f"train.early_stopping.metric: {self.metric!r} is not computed; choose one of "
                             f"{sorted(k for k in rec if k not in ('kind', 'step', 'epoch'))}")
        value, best = rec[self.metric], st.best
        better = best is None or (value > best["value"] + es.min_delta if self.mode == "max"
                                  else value < best["value"] - es.min_delta)
        if better:
            st.best = {"step": st.step, "epoch": rec["epoch"], "metric": self.metric, "value": value}
            st.bad_evals = 0
            weights = {k: v.contiguous() for k, v in self.raw_model.state_dict().items()}
            atomic_write_bytes(self.best_path, save(weights))
        else:
            st.bad_evals += 1
            if es.patience is not None and st.bad_evals >= es.patience:
                st.stopped = True
        self.note = f"val {self.metric} {value:.4f}"

    def _validate_everywhere(self) -> None:
        """Rank 0 validates (and runs `on_validate`); every rank then holds its decisions (best, patience,
        early stop), so all stop together. An error there stops every rank."""
        group, failed = self.group, None
        if group.main:
            try:
                self._validate()
            except Exception as err:  # re-raised below, after the others are told
                failed = err
        if group.size > 1:
            told = None if failed is None else f"{type(failed).__name__}: {failed}"
            state, self.note, error = group.broadcast((self.state.to_json(), self.note, told))
            if error is not None and not group.main:
                raise group.stop(f"rank 0 stopped at validation ({error})")
            for k, v in asdict(LoopState.from_json(state)).items():
                setattr(self.state, k, v)  # in place: run() holds this object
        if failed is not None:
            raise failed

    def _checkpoint(self) -> None:
        """Save everything a resumed run needs to replay the rest bit for bit (rank 0 writes; every rank's
        RNG states go in, so a resume with as many processes continues each one)."""
        rngs = self.group.gather((torch.get_rng_state(), self.aug_gen.get_state()))
        if not self.group.main:
            return
        opt_tensors, opt_meta = optimizer_state(self.optimizer.optimizer)
        tensors = {f"model/{k}": v.cpu() for k, v in self.raw_model.state_dict().items()}
        tensors |= {f"optim/{k}": v.cpu() for k, v in opt_tensors.items()}
        for rank, (torch_rng, aug_rng) in enumerate(rngs):
            suffix = f"@{rank}" if rank else ""
            tensors[f"rng/torch{suffix}"] = torch_rng
            tensors[f"rng/aug{suffix}"] = aug_rng
        state = {"loop": self.state.to_json(), "optimizer": opt_meta, "scheduler": self.scheduler.state_dict(),
                 "threads": self.threads}
        save_checkpoint(self.ckpt_dir, self.state.step, tensors, state, keep=self.cfg.keep_checkpoints)

    def run(self, reporter: Reporter, resumed_from: int | None) -> TrainResult:
        """Train from `self.state` to the last epoch or an early stop; the result holds the final weights."""
        cfg, st, main = self.cfg, self.state, self.group.main
        keep = st.step if resumed_from is not None else None
        self.log = MetricsLog(self.log_path, keep_until_step=keep) if main else None  # rank 0 alone writes the log
        if resumed_from is None and main:
            self.best_path.unlink(missing_ok=True)
        log_every = max(1, self.steps_per_epoch // 20)
        self.model.train()
        t0, window_t, window_n = time.perf_counter(), time.perf_counter(), 0
        seconds_before, samples_before = st.seconds, st.samples
        try:
            with reporter.bar("training", self.total_steps) as bar:
                bar.update(completed=st.step)
                while st.epoch < cfg.epochs and not st.stopped:
                    order = _epoch_order(self.task, self.inputs, self.train_idx, cfg.batch_size, self.seed, st.epoch)
                    while st.batch < self.batches and not st.stopped:
                        loss, rows = self._step(order)
                        window_n += rows
                        epoch_end = st.batch >= self.batches
                        if (st.step % log_every == 0 or epoch_end) and self.log is not None:
                            now = time.perf_counter()
                            self.log.train(st, self.batches, loss, self.scheduler.get_last_lr()[0],
                                           window_n / max(now - window_t, 1e-9))
                            window_t, window_n = now, 0
                        if epoch_end:
                            st.epoch += 1
                            st.batch = 0
                        if (cfg.eval_every and st.step % cfg.eval_every == 0) or (epoch_end and not cfg.eval_every):
                            self._validate_everywhere()
                        st.seconds = seconds_before + time.perf_counter() - t0
                        if epoch_end or (cfg.checkpoint_every and st.step % cfg.checkpoint_every == 0) or st.stopped:
                            self._checkpoint()
                        bar.update(completed=st.step, note=self.note)
                        if epoch_end:
                            break
        finally:
            if self.log is not None:
                self.log.close()
        final = self.accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)  # plain fp32 forward from here on
        self.model = final
        # the DDP wrapper and its gradient reducer go while the process group exists: a reducer freed after
        # destroy_process_group can wait forever for the gloo threads it joins (seen as a hung follower)
        self.accelerator.free_memory()
        self.group.close()  # the others wait for rank 0's last checkpoint, then every process is single again
        seconds = seconds_before + time.perf_counter() - t0
        if main and st.best is not None and self.best_path.exists():
            final.load_state_dict(load_file(str(self.best_path)))
        done = st.samples - samples_before
        rate = done / max(seconds - seconds_before, 1e-9) if done else 0.0
        return TrainResult(model=final.eval(), best=st.best, stopped_early=st.stopped, steps=st.step,
                           seconds=seconds, samples_per_s=rate, precision=self.precision, resumed_from=resumed_from)


def fit(task: Task, data: Dataset, cfg: TrainConfig, run_dir: Path | None, *, seed: int, resume: bool = False,
        reporter: Reporter | None = None, model: nn.Module | None = None,
        on_validate: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train `task`'s model on `data` (task already fitted); checkpoints and logs go to `run_dir`.

    `model` starts from a given module instead of `task.build_model()` (compression: a pruned model's
    recovery fine-tune, a distillation student); such a fit cannot be resumed. A loss that goes nan/inf
    raises TrainError, so a caller never records a diverged run as trained. `on_validate` sees every validation
    record (what metrics.jsonl gets); an exception it raises stops the fit there (the checkpoint stays).

    Under torchrun every process calls this with the same config, data and fitted task (checked before
    training); rank 0 passes the run directory and writes to it, the others write nothing and may pass
    None when not resuming (`distributed.follow`)."""
    if task.trainer == "adversarial":  # two networks, two optimizers: training/gan.py
        from shipml.training.gan import fit_adversarial

        return fit_adversarial(task, data, cfg, run_dir, seed=seed, resume=resume, reporter=reporter, model=model,
                               on_validate=on_validate)  # type: ignore[return-value]
    reporter = reporter or Reporter(quiet=True)
    if model is not None and resume:
        raise TrainError("a fit that starts from a given model cannot be resumed; start it again")
    here = world()
    if run_dir is None and (here.main or resume):
        raise TrainError("fit needs a run directory (only a non-zero rank of a fresh run may go without)")
    if here.main:
        assert run_dir is not None
        run_dir.mkdir(parents=True, exist_ok=True)
    ckpt, notes = load_latest(run_dir / "checkpoints") if resume and run_dir is not None else (None, [])
    for n in notes:
        reporter.warn(n)
    plan = set_threads(cfg, ckpt, reporter, share=here.local_size)
    threads = plan.threads
    torch.use_deterministic_algorithms(True, warn_only=True)
    precision = resolve_precision(cfg, task)
    reporter.info(precision_note(cfg, task, precision))
    accelerator = _accelerator("bf16" if precision == "bf16" else "no", here)  # joins the process group, if any
    group = Group(accelerator.device)
    group.handshake({"train": cfg.model_dump(mode="json"), "seed": seed, "precision": precision,
                     "data": data.fingerprint, "task": json.dumps(task.assets(), sort_keys=True, default=str),
                     "resume": resume, "checkpoint": None if ckpt is None else ckpt.path.name})
    loop = _Loop(task, data, cfg, run_dir or Path("rank-0-run"), seed=seed, precision=precision,
                 accelerator=accelerator, group=group, model=model, pretrained=ckpt is None,
                 on_validate=on_validate, threads=threads)
    resumed_from = None
    if ckpt is not None:
        loop._restore(ckpt)
        resumed_from = loop.state.step
        reporter.info(f"resuming from {ckpt.path.name} (step {loop.state.step}, epoch {loop.state.epoch})")
    elif resume:
        reporter.warn("no usable checkpoint found; starting from the beginning")
    return replace(loop.run(reporter, resumed_from), threads_reason=plan.reason)
