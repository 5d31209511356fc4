"""image-generation's own parts: losses, DiffAugment, the architecture options, and the bad-input refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits

from shipml.config import GANConfig
from shipml.data.dataset import CleaningLog, Dataset
from shipml.errors import ConfigError
from shipml.tasks import create_task
from shipml.tasks.gan import (
    GAN,
    ClassBatchNorm,
    Discriminator,
    diff_augment,
    minibatch_std,
    mode_seeking,
    pair_classes,
    to_uint8,
)


def _digits(size: int = 8, classes: int = 10) -> Dataset:
    d = load_digits()
    keep = d.target < classes
    images = (d.images[keep] * 255 / 16).astype(np.uint8)[..., None]
    if size != 8:
        images = np.pad(images, ((0, 0), (0, size - 8), (0, size - 8), (0, 0)))
    labels = d.target[keep].astype(str)
    frame = pd.DataFrame({"source": [f"{i}.png" for i in range(len(images))], "label": labels})
    split = np.random.default_rng(0).choice(np.array(["train", "val", "test"]), size=len(frame), p=[0.7, 0.15, 0.15])
    return Dataset("images", frame, "label", [], [], split, "x", CleaningLog(), classes=sorted(set(labels)),
                   images=images)


def test_losses() -> None:
    task = create_task("image-generation", model=GANConfig(loss="hinge")).fit(_digits())
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    # hinge: relu(1 - real) + relu(1 + fake), averaged per side; generator: -mean(fake)
    assert task.d_loss(real, fake).item() == pytest.approx((0 + 0.5) / 2 + (0 + 1.5) / 2)
    assert task.g_loss(fake).item() == pytest.approx(0.75)
    ns = create_task("image-generation", model=GANConfig(loss="non-saturating")).fit(_digits())
    sp = torch.nn.functional.softplus
    assert ns.d_loss(real, fake).item() == pytest.approx((sp(-real).mean() + sp(fake).mean()).item())
    assert ns.g_loss(fake).item() == pytest.approx(sp(-fake).mean().item())


def test_to_uint8_rounds_and_clamps() -> None:
    x = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0, 2.0]).view(1, 1, 1, 6)
    assert to_uint8(x).view(-1).tolist() == [0, 0, 128, 255, 255, 255]  # 127.5 rounds half to even: 128
    assert to_uint8(x).shape == (1, 1, 6, 1)  # (B, H, W, C)


def test_diff_augment_is_seeded_differentiable_and_changes_images() -> None:
    x = (torch.rand(16, 1, 8, 8) * 2 - 1).requires_grad_()
    a = diff_augment(x, torch.Generator().manual_seed(1))
    b = diff_augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape
    assert not torch.equal(a, diff_augment(x, torch.Generator().manual_seed(2)))
    assert (a == 0).flatten(1).sum(1).min() >= 16  # the cutout zeroes a 4x4 square in every image
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # the generator learns through it


def test_spectral_norm_and_classic_discriminator() -> None:
    data = _digits()
    sn = create_task("image-generation", model=GANConfig(spectral_norm=True)).fit(data).build_model()
    plain = create_task("image-generation", model=GANConfig(spectral_norm=False, ema=None)).fit(data).build_model()
    assert isinstance(sn, GAN) and isinstance(plain, GAN)
    names = [n for n, _ in sn.discriminator.named_parameters()]
    assert any("parametrizations.weight.original" in n for n in names)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in sn.discriminator.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.discriminator.modules())
    assert plain.ema is None and plain.sampler is plain.generator
    assert sn.ema is not None and sn.sampler is sn.ema


def test_minibatch_std_sees_its_group_only() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4)
    s = minibatch_std(x)  # groups of 4: images {0, 2, 4, 6} and {1, 3, 5, 7}
    assert s.shape == (8, 1, 4, 4) and (s > 0).all()
    same = x.clone()
    same[2] = same[4] = same[6] = same[0]  # group {0, 2, 4, 6} holds one image four times
    t = minibatch_std(same)
    assert t[0].max() < 1e-3 and torch.equal(t[0], t[6]) and torch.equal(t[1], s[1])
    assert minibatch_std(torch.randn(6, 3, 4, 4)).shape == (6, 1, 4, 4)  # 6 is no multiple of 4: one group
    d = Discriminator(GANConfig(minibatch_std=True, width=4), 10, 1).eval()  # eval: batch-norm couples nothing
    imgs, y = torch.randn(8, 1, 8, 8), torch.zeros(8, dtype=torch.long)
    with torch.no_grad():
        before = d(imgs, y)
        imgs[2] += 1
        after = d(imgs, y)
    assert after[0] != before[0] and torch.equal(after[1::2], before[1::2])  # image 2 moved its group only


def test_mode_seeking_pairs_one_class_and_rewards_spread() -> None:
    y = torch.tensor([3, 1, 4, 1, 5, 9, 2])
    assert pair_classes(y).tolist() == [3, 1, 4, 3, 1, 4, 2]  # pairs (0, 3), (1, 4), (2, 5); the odd one kept
    torch.manual_seed(0)
    z = torch.randn(8, 16)
    images = (torch.randn(8, 1, 8, 8) * 0.01).requires_grad_()
    loss = mode_seeking(images, z)
    loss.backward()
    assert images.grad is not None
    spread = (images[:4] - images[4:]).abs().mean().item()
    with torch.no_grad():
        moved = images - 0.001 * images.grad / images.grad.abs().max()
    assert (moved[:4] - moved[4:]).abs().mean().item() > spread  # descending the term pushes pairs apart
    assert mode_seeking(moved, z) < loss


def test_class_norm_takes_scale_and_shift_from_the_class() -> None:
    task = create_task("image-generation", model=GANConfig(class_norm=True)).fit(_digits())
    torch.manual_seed(0)
    model = task.build_model()
    norms = [m for m in model.sampler.modules() if isinstance(m, ClassBatchNorm)]
    assert len(norms) == 3  # the projection and both upsampling steps
    z = task.noise(4, torch.Generator().manual_seed(0)).repeat(2, 1)
    y = torch.tensor([0, 3, 3, 0, 0, 3, 3, 0])
    model.eval()
    with torch.no_grad():
        before = model(z, y)
        norms[1].scale.weight[3] *= 2  # class 3's scale in the first upsampling step only
        after = model(z, y)
    changed = (before - after).abs().amax(dim=(1, 2, 3)) > 0
    assert changed.tolist() == (y == 3).tolist()
    with pytest.raises(ValueError, match=r"needs model\.conditional: true"):
        GANConfig(class_norm=True, conditional=False)


def test_class_loss_head_scores_the_same_forward_pass() -> None:
    task = create_task("image-generation", model=GANConfig(class_loss=0.5, minibatch_std=True)).fit(_digits())
    torch.manual_seed(0)
    d = task.build_model().discriminator.eval()
    x, y = torch.rand(8, 1, 8, 8) * 2 - 1, torch.arange(8) % 10
    score, logits = d.score_and_logits(x, y)
    assert torch.equal(score, d(x, y)) and logits.shape == (8, 10)
    with pytest.raises(ValueError, match=r"class_loss.*needs model\.conditional: true"):
        GANConfig(class_loss=0.5, conditional=False)
    plain = create_task("image-generation", model=GANConfig(class_loss=0)).fit(_digits()).build_model().discriminator
    assert plain.classify is None and not any("classify" in k for k in plain.state_dict())
    # the default (0.4) steps aside for an unconditional model; sample_scale's (1.12) without a moving average
    assert GANConfig(conditional=False).class_loss == 0 and GANConfig(ema=None).sample_scale == 1


def test_class_norm_generator_exports_for_any_batch_size(tmp_path: Path) -> None:
    import onnxruntime as ort

    from shipml.export.generator import _trace

    task = create_task("image-generation", model=GANConfig(class_norm=True, width=8, z_dim=8)).fit(_digits())
    torch.manual_seed(0)
    sampler = task.export_module(task.build_model())
    _trace(sampler, 8, tmp_path / "g.onnx")  # traced with a batch of 2
    z, y = task.noise(5, torch.Generator().manual_seed(1)), torch.tensor([0, 3, 5, 9, 3])
    out = ort.InferenceSession(str(tmp_path / "g.onnx")).run(None, {"noise": z.numpy(), "class": y.numpy()})[0]
    with torch.no_grad():
        ref = sampler(z, y).numpy()
    assert out.shape == ref.shape == (5, 8, 8, 1)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


def test_sample_scale_scales_the_noise_of_what_is_sampled_and_exported(tmp_path: Path) -> None:
    import onnxruntime as ort

    from shipml.export.generator import _trace

    task = create_task("image-generation", model=GANConfig(sample_scale=1.5, width=8, z_dim=8)).fit(_digits())
    torch.manual_seed(0)
    model = task.build_model().eval()  # the average starts as a copy of the trained generator
    z, y = task.noise(4, torch.Generator().manual_seed(1)), torch.tensor([0, 3, 5, 9])
    with torch.no_grad():
        assert torch.equal(model(z, y), model.generator(1.5 * z, y))  # what is judged and generated
        assert not torch.equal(model(z, y), model.generator(z, y))  # the trained generator sees unscaled noise
        ref = task.export_module(model)(z, y).numpy()
    _trace(task.export_module(model), 8, tmp_path / "g.onnx")
    out = ort.InferenceSession(str(tmp_path / "g.onnx")).run(None, {"noise": z.numpy(), "class": y.numpy()})[0]
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1  # the package applies the same scale
    with pytest.raises(ValueError, match=r"sample_scale.*model\.ema is null"):
        GANConfig(sample_scale=1.5, ema=None)


def test_a_run_saved_before_the_default_options_loads_without_them() -> None:
    task = create_task("image-generation", model=GANConfig(r1=0, class_loss=0, sample_scale=1)).fit(_digits())
    torch.manual_seed(0)
    old_weights = task.build_model().state_dict()
    assets = task.assets()
    for key in ("r1", "class_loss", "sample_scale"):
        del assets["model"][key]  # model/task.json as written before these options existed
    loaded = type(task).from_assets(assets)
    assert (loaded.gan_cfg.r1, loaded.gan_cfg.class_loss, loaded.gan_cfg.sample_scale) == (0, 0, 1)
    loaded.build_model().load_state_dict(old_weights)  # no classifier head expected
    current = create_task("image-generation", model=GANConfig()).fit(_digits())
    assert type(current).from_assets(current.assets()).gan_cfg == current.gan_cfg  # keeps what it recorded
    assert current.gan_cfg.class_loss > 0 and current.gan_cfg.sample_scale != 1


def test_unconditional_generator_ignores_the_class() -> None:
    task = create_task("image-generation", model=GANConfig(conditional=False)).fit(_digits())
    torch.manual_seed(0)
    model = task.build_model().eval()
    z = task.noise(4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(z, torch.zeros(4, dtype=torch.long)), model(z, torch.full((4,), 3)))


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"multiples of 4.*data.image_size"):
        create_task("image-generation").fit(_digits(size=10))
    with pytest.raises(ConfigError, match=r"two or more classes.*conditional: false"):
        create_task("image-generation").fit(_digits(classes=1))
    create_task("image-generation", model=GANConfig(conditional=False)).fit(_digits(classes=1))  # documented: fine
    table = Dataset("table", pd.DataFrame({"x": [1.0, 2.0], "label": ["a", "b"]}), "label", ["x"], [],
                    np.array(["train", "test"]), "x", CleaningLog(), classes=["a", "b"])
    with pytest.raises(ConfigError, match="needs images data"):
        create_task("image-generation").fit(table)
