"""The adversarial loop (tasks whose `trainer` is "adversarial": image-generation), resumable to the bit.

Per batch of real images: one discriminator step (real vs generated, the task's `d_loss`, plus every
model.r1_every steps the R1 penalty on real images weighted model.r1 x r1_every / 2, and model.class_loss x
its classifier head's cross-entropy on the real images), one generator step (`g_loss`, plus
model.mode_seeking x the mode-seeking term, whose image pairs share a class, and model.class_loss x the
cross-entropy of its images against the classes asked for; the
discriminator's weights are frozen in it, so their gradients are not computed for nothing), then
the generator's moving average (EMA) follows. The discriminator has its own learning
rate, train.lr x model.d_lr_ratio (TTUR). Both networks train channels-last, their forward passes autocast to
bf16 when train.precision resolves to bf16 (weights, Adam state, the average and the losses stay fp32). As in the
supervised loop every random draw has a checkpointed
owner: the epoch order is a function of (seed, epoch), the noise comes from its own generator, and a
checkpoint holds both networks, the average, both optimizers and schedulers, the loop position and the RNGs,
so a run killed with SIGKILL and resumed ends on the same weights as one never stopped.

At each epoch end the judged generator draws a fixed-noise grid (`samples/epoch-NNN.png`, one row per class);
the report shows them. There is no validation loss to select a checkpoint by: the last generator is the model.
"""

from __future__ import annotations

import copy
import io
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from shipml._console import Reporter
from shipml.config import GANConfig, TrainConfig
from shipml.core.files import atomic_write_bytes
from shipml.data.dataset import Dataset
from shipml.errors import ConfigError, TrainError
from shipml.tasks.base import Task
from shipml.tasks.gan import GAN, Generator, diff_augment, mode_seeking, pair_classes, to_uint8
from shipml.training.checkpoint import load_latest, save_checkpoint
from shipml.training.compute import precision_note, resolve_precision, set_threads
from shipml.training.distributed import world
from shipml.training.optim import build_scheduler, optimizer_state, restore_optimizer
from shipml.training.records import LoopState, MetricsLog

__all__ = ["fit_adversarial", "sample_grid", "standing_stats"]

SAMPLES = "samples"  # folder of the per-epoch grids in the run directory
# batches of 128 samples behind the standing statistics of each epoch's grid: enough for a picture (the saved
# generator's use 8; those took 0.16 s, 6% of a training epoch on mnist5k, 2 take 0.04 s)
GRID_STAT_BATCHES = 2


def _check(cfg: TrainConfig) -> None:
    """Settings of the supervised loop that mean nothing here are refused, not silently ignored."""
    bad = []
    if cfg.optimizer != "adamw":
        bad.append(f"train.optimizer: {cfg.optimizer} (the GAN uses Adam with model.beta1; remove it)")
    if cfg.grad_accum != 1:
        bad.append("train.grad_accum (set it to 1)")
    if cfg.early_stopping.patience is not None or cfg.early_stopping.metric is not None:
        bad.append("train.early_stopping (a GAN has no validation loss to stop on; remove it)")
    if cfg.l1 or cfg.weight_decay:
        bad.append("train.l1 / train.weight_decay (not used by the adversarial loop; set them to 0)")
    if bad:
        raise ConfigError("image-generation cannot use " + "; ".join(bad))


def _epoch_order(train_idx: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)  # the supervised loop's rule
    return train_idx[torch.randperm(len(train_idx), generator=g).numpy()]


def _grid_labels(task: Task, per_class: int) -> torch.Tensor:
    rows = task.n_classes if task.prep["conditional"] else 8  # type: ignore[attr-defined]
    return torch.arange(rows).repeat_interleave(per_class) % max(1, task.n_classes)  # type: ignore[attr-defined]


@torch.no_grad()
def standing_stats(generator: Generator, task: Task, seed: int, batches: int = 8, size: int = 128) -> Generator:
    """A copy of `generator` whose batch-norm statistics are averaged over fresh samples of its own weights
    ("standing statistics", Brock et al. 2019): a moving average of weights does not match the running
    statistics the training generator collected, and sampling with mismatched statistics blurs the images."""
    gen = copy.deepcopy(generator).train()
    for m in gen.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches below
    g = torch.Generator().manual_seed(seed + 11)
    counts = np.asarray(task.prep.get("class_counts") or [1], dtype=np.float64)
    probs = torch.as_tensor(counts / counts.sum())
    for _ in range(batches):
        labels = torch.multinomial(probs, size, replacement=True, generator=g)
        gen(task.noise(size, g), labels)  # type: ignore[attr-defined]
    for m in gen.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.1
    return gen.eval()


@torch.no_grad()
def sample_grid(generator: Generator, task: Task, seed: int) -> bytes:
    """A PNG: one row per class (8 rows when unconditional), `model.grid` fixed-noise samples per row."""
    cfg = task.model_cfg
    assert isinstance(cfg, GANConfig)
    labels = _grid_labels(task, cfg.grid)
    noise = task.noise(len(labels), torch.Generator().manual_seed(seed + 7))  # type: ignore[attr-defined]
    images = to_uint8(generator.eval()(noise, labels)).numpy()  # (R*K, H, W, C)
    return tile_png(images, cfg.grid)


def tile_png(images: np.ndarray, per_row: int, gap: int = 2) -> bytes:
    """(N, H, W, C) uint8 -> one PNG with `per_row` images per row, `gap` white pixels between them."""
    n, h, w, c = images.shape
    rows = math.ceil(n / per_row)
    canvas = np.full((rows * (h + gap) + gap, per_row * (w + gap) + gap, c), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, per_row)
        canvas[gap + r * (h + gap): gap + r * (h + gap) + h, gap + k * (w + gap): gap + k * (w + gap) + w] = img
    buf = io.BytesIO()
    Image.fromarray(canvas[..., 0] if c == 1 else canvas).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


class _Adversarial:
    """One GAN fit's moving parts; everything that changes per step goes into a checkpoint."""

    def __init__(self, task: Task, data: Dataset, cfg: TrainConfig, run_dir: Path, seed: int, precision: str,
                 threads: int = 1) -> None:
        self.task, self.cfg, self.seed, self.run_dir, self.precision = task, cfg, seed, run_dir, precision
        self.threads = threads  # recorded in each checkpoint: a resume uses as many
        self.gan_cfg = task.model_cfg
        assert isinstance(self.gan_cfg, GANConfig)
        self.train_idx = data.indices("train")
        if len(self.train_idx) < 2:
            raise TrainError(f"the training split has {len(self.train_idx)} images; need at least 2 (add data)")
        self.inputs = task.encode_dataset(data)
        self.labels = task.encode_targets(data.y())
        torch.manual_seed(seed)
        model = task.build_model()
        assert isinstance(model, GAN)
        self.model = model.to(memory_format=torch.channels_last)  # measured ~12% faster convolutions on CPU
        betas = (self.gan_cfg.beta1, 0.999)
        self.g_opt = torch.optim.Adam(model.generator.parameters(), lr=cfg.lr, betas=betas)
        self.d_opt = torch.optim.Adam(model.discriminator.parameters(), lr=cfg.lr * self.gan_cfg.d_lr_ratio,
                                      betas=betas)
        full, rest = divmod(len(self.train_idx), cfg.batch_size)
        self.batches = full + (1 if rest >= 2 else 0)  # a last batch of one image breaks batch-norm: dropped
        self.total_steps = self.batches * cfg.epochs
        self.g_sched = build_scheduler(self.g_opt, self.total_steps, cfg)
        self.d_sched = build_scheduler(self.d_opt, self.total_steps, cfg)
        self.noise_gen = torch.Generator().manual_seed(seed + 2)
        self.aug_gen = torch.Generator().manual_seed(seed + 1)
        self.state = LoopState()

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> None:
        tensors = {f"model/{k}": v for k, v in self.model.state_dict().items()}
        g_t, g_meta = optimizer_state(self.g_opt)
        d_t, d_meta = optimizer_state(self.d_opt)
        tensors |= {f"optim_g/{k}": v for k, v in g_t.items()} | {f"optim_d/{k}": v for k, v in d_t.items()}
        tensors |= {"rng/torch": torch.get_rng_state(), "rng/noise": self.noise_gen.get_state(),
                    "rng/aug": self.aug_gen.get_state()}
        state = {"loop": self.state.to_json(), "optimizer_g": g_meta, "optimizer_d": d_meta,
                 "scheduler_g": self.g_sched.state_dict(), "scheduler_d": self.d_sched.state_dict(),
                 "trainer": "adversarial", "threads": self.threads}
        save_checkpoint(self.run_dir / "checkpoints", self.state.step, tensors, state, keep=self.cfg.keep_checkpoints)

    def restore(self, ckpt_tensors: dict[str, torch.Tensor], state: dict) -> None:  # type: ignore[type-arg]
        if state.get("trainer") != "adversarial":
            raise TrainError("the newest checkpoint was not written by the adversarial loop; start a new run")

        def section(p: str) -> dict[str, torch.Tensor]:
            return {k[len(p) + 1:]: v for k, v in ckpt_tensors.items() if k.startswith(p + "/")}

        self.model.load_state_dict(section("model"))
        restore_optimizer(self.g_opt, section("optim_g"), state["optimizer_g"])
        restore_optimizer(self.d_opt, section("optim_d"), state["optimizer_d"])
        self.g_sched.load_state_dict(state["scheduler_g"])
        self.d_sched.load_state_dict(state["scheduler_d"])
        torch.set_rng_state(ckpt_tensors["rng/torch"])
        self.noise_gen.set_state(ckpt_tensors["rng/noise"])
        self.aug_gen.set_state(ckpt_tensors["rng/aug"])
        self.state = LoopState.from_json(state["loop"])

    # ------------------------------------------------------------------ one step
    def step(self, order: np.ndarray) -> dict[str, float]:
        task, m, bs = self.task, self.model, self.cfg.batch_size
        idx = torch.as_tensor(order[self.state.batch * bs: (self.state.batch + 1) * bs])
        real = task.make_batch(self.inputs, idx, train=True, gen=self.noise_gen)["pixels"]  # (B, C, H, W)
        real = real.contiguous(memory_format=torch.channels_last)
        y = self.labels[idx]  # generated images get the real batch's classes: the same class mix
        b = len(idx)
        with torch.no_grad(), self._autocast():
            fake = m.generator(task.noise(b, self.noise_gen), y)  # type: ignore[attr-defined]
        r1 = self.gan_cfg.r1 if self.state.step % self.gan_cfg.r1_every == 0 else 0.0
        real_in = self._aug(real)
        if r1:
            real_in = real_in.detach().requires_grad_(True)
        ac = self.gan_cfg.class_loss
        with self._autocast():
            real_scores, real_logits = self._discriminate(real_in, y)
            scores = real_scores.float(), m.discriminator(self._aug(fake), y).float()
        d_loss = task.d_loss(*scores)  # type: ignore[attr-defined]
        penalty = self._r1(scores[0], real_in) if r1 else None
        class_d = None if real_logits is None else F.cross_entropy(real_logits.float(), y)
        self.d_opt.zero_grad(set_to_none=True)
        (d_loss + (0 if penalty is None else r1 * self.gan_cfg.r1_every / 2 * penalty)
         + (0 if class_d is None else ac * class_d)).backward()
        self.d_opt.step()
        z = task.noise(b, self.noise_gen)  # type: ignore[attr-defined]
        ms = self.gan_cfg.mode_seeking if b >= 2 else 0.0
        y_g = pair_classes(y) if ms else y
        m.discriminator.requires_grad_(False)  # the generator step needs no gradient of the discriminator's weights
        with self._autocast():
            fake = m.generator(z, y_g)
            fake_scores, fake_logits = self._discriminate(self._aug(fake), y_g)
        g_loss = task.g_loss(fake_scores.float())  # type: ignore[attr-defined]
        seeking = mode_seeking(fake.float(), z) if ms else None
        class_g = None if fake_logits is None else F.cross_entropy(fake_logits.float(), y_g)
        self.g_opt.zero_grad(set_to_none=True)
        (g_loss + (0 if seeking is None else ms * seeking) + (0 if class_g is None else ac * class_g)).backward()
        m.discriminator.requires_grad_(True)
        self.g_opt.step()
        self.g_sched.step()
        self.d_sched.step()
        d, g = d_loss.item(), g_loss.item()
        if not (math.isfinite(d) and math.isfinite(g)):
            raise TrainError(f"the GAN losses became d={d} g={g} at step {self.state.step + 1}; training stopped. "
                             f"Try a lower train.lr (now {self.cfg.lr:g}) or model.spectral_norm: true"
                            + (", or train.precision: fp32" if self.precision == "bf16" else ""))
        if m.ema is not None:
            self._follow(m.ema, m.generator)
        self.state.step += 1
        self.state.batch += 1
        self.state.samples += b
        extra = {"mode_seeking": seeking, "r1": penalty, "class_d": class_d, "class_g": class_g}
        return {"d_loss": d, "g_loss": g} | {k: v.item() for k, v in extra.items() if v is not None}

    def _discriminate(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The discriminator's scores (B,) and, with model.class_loss, its class logits (B, K) from the same pass."""
        d = self.model.discriminator
        return d.score_and_logits(images, labels) if self.gan_cfg.class_loss else (d(images, labels), None)

    @staticmethod
    def _r1(real_scores: torch.Tensor, real_in: torch.Tensor) -> torch.Tensor:
        """R1 (Mescheder et al. 2018): the mean over the batch of |d score / d image|^2, differentiable (the
        discriminator's step descends it); the images are the ones the discriminator saw (augmented, if so)."""
        (grad,) = torch.autograd.grad(real_scores.sum(), real_in, create_graph=True)
        return grad.float().pow(2).sum(dim=(1, 2, 3)).mean()

    def _autocast(self) -> torch.autocast:
        """bf16 autocast of both networks' forward passes (train.precision); weights, optimizer state, the moving
        average and the losses stay fp32."""
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.aug_gen) if self.gan_cfg.diff_augment else x

    @torch.no_grad()
    def _follow(self, ema: nn.Module, gen: nn.Module) -> None:
        """ema <- decay * ema + (1 - decay) * generator; warmed up so early averages are not dominated by the
        random initial weights. Batch-norm buffers are copied (standing_stats replaces them for sampling)."""
        decay = min(float(self.gan_cfg.ema or 0.0), (1 + self.state.step) / (10 + self.state.step))
        for e, p in zip(ema.parameters(), gen.parameters(), strict=True):
            e.lerp_(p, 1 - decay)
        for e, p in zip(ema.buffers(), gen.buffers(), strict=True):
            e.copy_(p)

    # ------------------------------------------------------------------ the loop
    def run(self, reporter: Reporter, resumed: bool) -> None:
        cfg, st = self.cfg, self.state
        log = MetricsLog(self.run_dir / "metrics.jsonl", keep_until_step=st.step if resumed else None)
        (self.run_dir / SAMPLES).mkdir(exist_ok=True)
        log_every = max(1, self.batches // 10)
        t0, seconds_before = time.perf_counter(), st.seconds
        window_t, window_n = t0, 0
        self.model.train()
        try:
            with reporter.bar("training (adversarial)", self.total_steps) as bar:
                bar.update(completed=st.step)
                while st.epoch < cfg.epochs:
                    order = _epoch_order(self.train_idx, self.seed, st.epoch)
                    while st.batch < self.batches:
                        losses = self.step(order)
                        window_n += cfg.batch_size
                        epoch_end = st.batch >= self.batches
                        if st.step % log_every == 0 or epoch_end:
                            now = time.perf_counter()
                            log.train(st, self.batches, losses["d_loss"], self.g_sched.get_last_lr()[0],
                                      window_n / max(now - window_t, 1e-9), **losses)
                            window_t, window_n = now, 0
                        if epoch_end:
                            st.epoch += 1
                            st.batch = 0
                            self._grid(st.epoch)
                        st.seconds = seconds_before + time.perf_counter() - t0
                        if epoch_end or (cfg.checkpoint_every and st.step % cfg.checkpoint_every == 0):
                            self.checkpoint()
                        bar.update(completed=st.step, note=f"d {losses['d_loss']:.3f} g {losses['g_loss']:.3f}")
                        if epoch_end:
                            break
        finally:
            log.close()

    def _grid(self, epoch: int) -> None:
        judged = standing_stats(self.model.sampler, self.task, self.seed, batches=GRID_STAT_BATCHES)
        atomic_write_bytes(self.run_dir / SAMPLES / f"epoch-{epoch:03d}.png", sample_grid(judged, self.task, self.seed))
        self.model.train()

    def final(self) -> GAN:
        """The model that is saved: the judged generator with standing batch-norm statistics."""
        final = copy.deepcopy(self.model).to(memory_format=torch.contiguous_format).eval()
        judged = standing_stats(final.sampler, self.task, self.seed)
        if final.ema is not None:
            final.ema = judged
        else:
            final.generator = judged
        return final


def fit_adversarial(task: Task, data: Dataset, cfg: TrainConfig, run_dir: Path | None, *, seed: int,
                    resume: bool = False, reporter: Reporter | None = None, model: nn.Module | None = None,
                    on_validate: object = None) -> object:
    """Train a GAN task on `data` (task fitted); checkpoints, metrics.jsonl and samples/ go to `run_dir`.
    Returns a `training.loop.TrainResult` (the final GAN, no best checkpoint)."""
    from shipml.training.loop import TrainResult  # the loop imports this module

    reporter = reporter or Reporter(quiet=True)
    _check(cfg)
    if model is not None:
        raise ConfigError(f"task {task.name!r} cannot be fine-tuned from another model (pruning, distillation)")
    if on_validate is not None:
        raise ConfigError(f"task {task.name!r} has no validation metric to report during training (shipml tune)")
    if world().size > 1:
        raise TrainError(f"task {task.name!r} trains in one process; run it without --nproc / torchrun")
    if run_dir is None:
        raise TrainError("fit needs a run directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt, notes = load_latest(run_dir / "checkpoints") if resume else (None, [])
    for n in notes:
        reporter.warn(n)
    plan = set_threads(cfg, ckpt, reporter)
    threads = plan.threads
    torch.use_deterministic_algorithms(True, warn_only=True)
    precision = resolve_precision(cfg, task)
    reporter.info(precision_note(cfg, task, precision))
    loop = _Adversarial(task, data, cfg, run_dir, seed, precision, threads)
    resumed_from = None
    if ckpt is not None:
        loop.restore(ckpt.tensors, ckpt.state)
        resumed_from = loop.state.step
        reporter.info(f"resuming from {ckpt.path.name} (step {loop.state.step}, epoch {loop.state.epoch})")
    elif resume:
        reporter.warn("no usable checkpoint found; starting from the beginning")
    samples_before, seconds_before = loop.state.samples, loop.state.seconds
    loop.run(reporter, resumed=resumed_from is not None)
    st = loop.state
    rate = (st.samples - samples_before) / max(st.seconds - seconds_before, 1e-9)
    return TrainResult(model=loop.final(), best=None, stopped_early=False, steps=st.step, seconds=st.seconds,
                       samples_per_s=rate, precision=precision, resumed_from=resumed_from,
                       threads_reason=plan.reason)
