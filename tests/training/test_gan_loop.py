"""The adversarial loop: deterministic, sample grids per epoch, refusals, and `kill -9` + resume to the bit."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from procs import finish, run_dir, shipml
from safetensors.torch import load_file
from sklearn.datasets import load_digits

from shipml.config import GANConfig, TrainConfig
from shipml.data.dataset import CleaningLog, Dataset
from shipml.errors import ConfigError
from shipml.tasks import create_task
from shipml.training import fit
from shipml.training.gan import _Adversarial, _epoch_order


@pytest.fixture(scope="module")
def digits() -> Dataset:
    d = load_digits()
    images = (d.images * 255 / 16).astype(np.uint8)[..., None][:600]
    labels = d.target[:600].astype(str)
    frame = pd.DataFrame({"source": [f"{i}.png" for i in range(len(images))], "label": labels})
    split = np.random.default_rng(0).choice(np.array(["train", "val", "test"]), size=len(frame), p=[0.8, 0.1, 0.1])
    return Dataset("images", frame, "label", [], [], split, "x", CleaningLog(), classes=sorted(set(labels)),
                   images=images)


def _fit(data: Dataset, run: Path, model: dict[str, object] | None = None, **train: object) -> torch.nn.Module:
    task = create_task("image-generation", model=GANConfig(width=8, z_dim=8, grid=3, **(model or {}))).fit(data)
    cfg = TrainConfig.model_validate({"epochs": 2, "batch_size": 32, "lr": 2e-4, "schedule": "constant",
                                      "threads": 1, "checkpoint_every": 5, **train})
    return fit(task, data, cfg, run, seed=3).model


def test_deterministic_with_grids_and_losses(digits: Dataset, tmp_path: Path) -> None:
    a = _fit(digits, tmp_path / "a").state_dict()
    b = _fit(digits, tmp_path / "b").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    grids = sorted(p.name for p in (tmp_path / "a" / "samples").iterdir())
    assert grids == ["epoch-001.png", "epoch-002.png"]
    img = Image.open(tmp_path / "a" / "samples" / "epoch-002.png")
    assert img.size == (3 * 10 + 2, 10 * 10 + 2)  # 10 classes x 3 samples of 8x8, 2-pixel gaps
    assert (tmp_path / "a" / "samples" / "epoch-002.png").read_bytes() == \
        (tmp_path / "b" / "samples" / "epoch-002.png").read_bytes()
    recs = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert recs and all({"d_loss", "g_loss"} <= r.keys() for r in recs)
    ema = {k for k in a if k.startswith("ema.")}
    assert ema and not all(torch.equal(a[k], a["generator." + k[4:]]) for k in ema if "running" not in k)


def test_mode_seeking_and_minibatch_std_train_deterministically(digits: Dataset, tmp_path: Path) -> None:
    opts = {"mode_seeking": 1.0, "minibatch_std": True}
    a = _fit(digits, tmp_path / "a", opts, epochs=1).state_dict()
    b = _fit(digits, tmp_path / "b", opts, epochs=1).state_dict()
    plain = _fit(digits, tmp_path / "c", {"mode_seeking": 0.0, "minibatch_std": True}, epochs=1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["generator.project.0.weight"], plain["generator.project.0.weight"])
    recs = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert recs and all(r["mode_seeking"] > 0 and np.isfinite(r["g_loss"]) for r in recs)  # logged apart from g_loss


def test_bf16_autocast_and_class_norm_train_deterministically(digits: Dataset, tmp_path: Path) -> None:
    task = create_task("image-generation", model=GANConfig(width=8, z_dim=8, grid=3, class_norm=True)).fit(digits)
    cfg = {"epochs": 1, "batch_size": 32, "lr": 2e-4, "schedule": "constant", "threads": 1}
    runs = {p: [fit(task, digits, TrainConfig.model_validate({**cfg, "precision": p}), tmp_path / f"{p}{i}", seed=3)
                for i in range(2 if p == "bf16" else 1)] for p in ("bf16", "fp32")}
    (a, b), (f,) = runs["bf16"], runs["fp32"]
    assert a.precision == "bf16" and f.precision == "fp32"
    sa, sb, sf = a.model.state_dict(), b.model.state_dict(), f.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    key = "generator.project.0.weight"
    assert not torch.equal(sa[key], sf[key])  # the forward passes really ran in bf16
    assert all(v.is_contiguous() for v in sa.values())  # trained channels-last, saved in the default layout


def _loop(data: Dataset, tmp_path: Path, **model: object) -> _Adversarial:
    """An adversarial loop over tiny networks, one thread, fp32, ready for `step`."""
    task = create_task("image-generation", model=GANConfig(width=8, z_dim=8, grid=3, **model)).fit(data)
    cfg = TrainConfig.model_validate({"epochs": 1, "batch_size": 32, "lr": 2e-4, "schedule": "constant",
                                      "threads": 1})
    return _Adversarial(task, data, cfg, tmp_path, seed=3, precision="fp32")


def test_generator_step_computes_no_discriminator_gradients(digits: Dataset, tmp_path: Path) -> None:
    """Each discriminator weight gets one gradient a step (its own loss's), not a second one from the generator's
    backward pass that would only be thrown away."""
    loop = _loop(digits, tmp_path)
    d_params = list(loop.model.discriminator.parameters())
    calls = [0] * len(d_params)

    def count(i: int) -> Callable[[torch.Tensor], None]:
        def hook(grad: torch.Tensor) -> None:
            calls[i] += 1
        return hook

    for i, p in enumerate(d_params):
        p.register_hook(count(i))
    g_before = [p.detach().clone() for p in loop.model.generator.parameters()]
    loop.step(_epoch_order(loop.train_idx, 3, 0))
    assert calls == [1] * len(d_params)
    assert all(p.requires_grad for p in d_params)  # trainable again for the next discriminator step
    assert any(not torch.equal(a, p) for a, p in zip(g_before, loop.model.generator.parameters(), strict=True))


def _d_grads(data: Dataset, tmp_path: Path, step: int, **model: object) -> list[torch.Tensor]:
    """The discriminator's gradients of one loop step taken at position `step` (from the same weights)."""
    model = {"r1": 0.0} | model  # the default (0.2) is off here unless given
    loop = _loop(data, tmp_path, **model)
    loop.state.step = step
    losses = loop.step(_epoch_order(loop.train_idx, 3, 0))
    assert ("r1" in losses) == (model["r1"] > 0 and step % int(model.get("r1_every", 4)) == 0)  # type: ignore[operator, call-overload]
    return [p.grad.clone() for p in loop.model.discriminator.parameters()]  # type: ignore[union-attr]


def test_r1_penalty_changes_the_discriminator_step_lazily(digits: Dataset, tmp_path: Path) -> None:
    plain = _d_grads(digits, tmp_path, 0)
    same = lambda a, b: all(torch.equal(x, y) for x, y in zip(a, b, strict=True))  # noqa: E731
    assert same(plain, _d_grads(digits, tmp_path, 0))
    assert not same(plain, _d_grads(digits, tmp_path, 0, r1=1.0, r1_every=2))  # a penalised step
    assert same(_d_grads(digits, tmp_path, 1), _d_grads(digits, tmp_path, 1, r1=1.0, r1_every=2))  # a skipped one
    # every 2nd step at gamma 0.25 weighs the same as every step at gamma 0.5 (the penalty is weighted x r1_every)
    every, lazy = _d_grads(digits, tmp_path, 2, r1=0.5, r1_every=1), _d_grads(digits, tmp_path, 2, r1=0.25, r1_every=2)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(every, lazy, strict=True))


def test_r1_is_the_squared_gradient_norm_on_real_images() -> None:
    """For a linear critic D(x) = <w, x> the gradient is w for every image: the penalty is |w|^2 and its own
    gradient (what the discriminator's step descends) is 2w."""
    w = torch.randn(1, 2, 3, 3, requires_grad=True)
    x = torch.randn(5, 2, 3, 3, requires_grad=True)
    penalty = _Adversarial._r1((x * w).sum(dim=(1, 2, 3)), x)
    assert torch.allclose(penalty, w.detach().pow(2).sum())
    penalty.backward()
    assert torch.allclose(w.grad, 2 * w.detach())  # type: ignore[arg-type]


def test_class_loss_trains_the_head_on_real_images_and_the_generator_on_its_verdict(digits: Dataset,
                                                                                      tmp_path: Path) -> None:
    """The classifier head's output gets a gradient twice a step: from its cross-entropy on the real images (the
    discriminator's step) and from its verdict on the generated ones (the generator's step)."""
    loop = _loop(digits, tmp_path, class_loss=1.0)
    grads: list[float] = []
    head = loop.model.discriminator.classify

    def watch(mod: torch.nn.Module, inp: object, out: torch.Tensor) -> None:
        out.register_hook(lambda g: grads.append(g.abs().sum().item()))

    head.register_forward_hook(watch)
    before = head.weight.detach().clone()
    losses = loop.step(_epoch_order(loop.train_idx, 3, 0))
    assert len(grads) == 2 and all(g > 0 for g in grads)
    assert not torch.equal(before, head.weight) and losses["class_d"] > 0 and losses["class_g"] > 0


def test_supervised_settings_are_refused(digits: Dataset, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="grad_accum"):
        _fit(digits, tmp_path / "x", grad_accum=2)
    with pytest.raises(ConfigError, match="early_stopping"):
        _fit(digits, tmp_path / "y", early_stopping={"patience": 2})


CONFIG = """
name: gan
seed: 5
data: {path: "sklearn:digits"}
task: {name: image-generation}
model: {arch: dcgan, width: 16, z_dim: 16, grid: 2, r1: 0.2, r1_every: 3, class_loss: 0.2}  # r1: resumed mid-cycle
train: {epochs: 25, batch_size: 32, lr: 0.0002, schedule: constant, checkpoint_every: 7, keep_checkpoints: 2,
        threads: 1}
evaluate: {judge: {epochs: 1, samples: 100}}
"""


@pytest.mark.slow
def test_kill_minus_nine_then_resume_is_bit_identical(tmp_path: Path) -> None:
    ref_root = tmp_path / "reference"
    ref_root.mkdir()
    (ref_root / "c.yaml").write_text(CONFIG)
    finish(shipml("train", "c.yaml", "--quiet", cwd=ref_root))
    reference = load_file(str(run_dir(ref_root, "gan") / "model" / "model.safetensors"))

    root = tmp_path / "killed"
    root.mkdir()
    (root / "c.yaml").write_text(CONFIG)
    proc = shipml("train", "c.yaml", "--quiet", cwd=root)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(list((root / "runs").glob("gan-*/checkpoints/ckpt-*.safetensors"))) >= 2:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "training finished before it could be killed; make the run longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = run_dir(root, "gan")
    assert not (run / "model" / "model.safetensors").exists()
    finish(shipml("train", "--resume", str(run), "--quiet", cwd=root))
    resumed = load_file(str(run / "model" / "model.safetensors"))
    assert resumed.keys() == reference.keys()
    for k, v in reference.items():
        assert torch.equal(resumed[k], v), f"{k} differs after kill -9 and resume"
    assert json.loads((run / "metrics.json").read_text())["test"] == \
        json.loads((run_dir(ref_root, "gan") / "metrics.json").read_text())["test"]
