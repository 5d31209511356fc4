"""image-generation: a DCGAN (optionally class-conditional) that learns to draw the training images.

The networks (Radford et al. 2016, in the 28x28 MNIST shape): the generator maps noise (+ a class embedding)
through a linear layer to a (4w, H/4, W/4) map and two transposed-conv upsamplings with batch-norm to a tanh
image; the discriminator downsamples with strided convs (spectral-normalised, or batch-normalised in the
classic recipe) to a feature vector scored by a linear layer plus, when conditional, a projection term
<embed(class), features> (Miyato & Koyama 2018); optionally the last convolution also sees a minibatch-std
channel (Karras et al. 2018). The mode-seeking term (Mao et al. 2019) rewards the generator for drawing
different images of one class from different noise. The adversarial loop is `shipml/training/gan.py`; what this
task owns is the architecture, the pixel scaling and the losses (mode seeking included).

Images are scaled to [-1, 1] from uint8; generated images go back to uint8 with `to_uint8`, the one rounding
rule shared by the run, the exported graph and the report's sample grids.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from shipml.config import GANConfig
from shipml.data.dataset import Dataset
from shipml.errors import ConfigError, TrainError
from shipml.tasks._registry import register_task
from shipml.tasks.base import Task, Tensors

__all__ = ["GAN", "ClassBatchNorm", "Discriminator", "Generator", "ImageGeneration", "diff_augment", "minibatch_std",
           "mode_seeking", "pair_classes", "to_uint8"]


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) images in [-1, 1] -> (B, H, W, C) uint8, rounding to the nearest grey level."""
    scaled = ((x.float() + 1) * 127.5).round().clamp(0, 255)
    return scaled.permute(0, 2, 3, 1).to(torch.uint8)


def diff_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """DiffAugment's translation (up to 1/8 of the size, background padded) and cutout (a zeroed square of half
    the size) per image; differentiable, so the generator learns through it. (B, C, H, W) -> (B, C, H, W)."""
    b, _, h, w = x.shape
    sh, sw = max(1, round(h / 8)), max(1, round(w / 8))
    ty = torch.randint(-sh, sh + 1, (b, 1, 1), generator=gen)
    tx = torch.randint(-sw, sw + 1, (b, 1, 1), generator=gen)
    gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    gy = (gy[None] + ty + 1).clamp(0, h + 1)  # (B, H, W) rows of the padded image
    gx = (gx[None] + tx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1], value=-1.0).permute(0, 2, 3, 1)  # (B, H+2, W+2, C)
    x = padded[torch.arange(b)[:, None, None], gy, gx].permute(0, 3, 1, 2)
    ch, cw = h // 2, w // 2
    oy = torch.randint(0, h + 1 - ch, (b, 1, 1), generator=gen)
    ox = torch.randint(0, w + 1 - cw, (b, 1, 1), generator=gen)
    ry, rx = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    keep = ~((ry >= oy) & (ry < oy + ch) & (rx >= ox) & (rx < ox + cw))  # (B, H, W)
    return x * keep[:, None].to(x.dtype)


def minibatch_std(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """(B, C, H, W) -> (B, 1, H, W): per group of `group` images (the whole batch when B is not a multiple), the
    features' standard deviation across the group, averaged over features and positions (Karras et al. 2018)."""
    b = x.shape[0]
    g = group if b % group == 0 and b >= group else b
    y = x.view(g, b // g, *x.shape[1:])  # image i of every group at [:, i]
    std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (B/g,)
    return std.repeat(g).view(b, 1, 1, 1).expand(b, 1, *x.shape[2:])


def pair_classes(y: torch.Tensor) -> torch.Tensor:
    """Classes for a generator batch of len(y) in which images i and i + B//2 (i < B//2) share a class: the pairs
    of the mode-seeking term. The first half keeps y's classes, so the mix stays the real batch's."""
    h = len(y) // 2
    return torch.cat([y[:h], y[:h], y[2 * h:]])


def mode_seeking(images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The mode-seeking term (Mao et al. 2019) over the pairs (i, i + B//2): 1 / (mean |G(z1) - G(z2)| /
    mean |z1 - z2|); it falls as images of one class differ more, relative to how much their noise differs."""
    h = len(images) // 2
    spread = (images[:h] - images[h:2 * h]).abs().mean() / (noise[:h] - noise[h:2 * h]).abs().mean()
    return 1 / (spread + 1e-5)


class ClassBatchNorm(nn.Module):
    """Batch-norm whose scale and shift are looked up per class (conditional batch-norm, de Vries et al. 2017;
    BigGAN's generator): (B, C, ...) features, (B,) classes -> (B, C, ...). Starts as plain batch-norm (scale 1,
    shift 0 for every class)."""

    def __init__(self, n_classes: int, channels: int, dims: int) -> None:
        super().__init__()
        self.norm = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(channels, affine=False)
        self.scale = nn.Embedding(n_classes, channels)
        self.shift = nn.Embedding(n_classes, channels)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        scale, shift = self.scale(label), self.shift(label)  # (B, C)
        for _ in range(x.dim() - 2):  # (B, C, 1, 1) for maps; no batch size is traced into an exported graph
            scale, shift = scale.unsqueeze(-1), shift.unsqueeze(-1)
        return self.norm(x) * scale + shift


class Generator(nn.Module):
    """noise (B, z) [+ class (B,)] -> images (B, C, H, W) in [-1, 1]."""

    def __init__(self, cfg: GANConfig, n_classes: int, channels: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.cfg, self.c0, self.h0, self.w0 = cfg, cfg.width * 4, size[0] // 4, size[1] // 4
        self.noise_scale = 1.0  # model.sample_scale on the moving average (GAN sets it); the trained one sees 1
        self.embed = nn.Embedding(n_classes, cfg.z_dim) if cfg.conditional else None
        z_in = cfg.z_dim * (2 if cfg.conditional else 1)
        w, cbn = cfg.width, cfg.class_norm  # the config refuses class_norm without conditional

        def norm(c: int, dims: int) -> nn.Module:
            if cbn:
                return ClassBatchNorm(n_classes, c, dims)
            return nn.BatchNorm1d(c) if dims == 1 else nn.BatchNorm2d(c)

        self.project = nn.Sequential(nn.Linear(z_in, self.c0 * self.h0 * self.w0, bias=False),
                                     norm(self.c0 * self.h0 * self.w0, 1), nn.ReLU(inplace=True))
        self.body = nn.Sequential(
            nn.ConvTranspose2d(4 * w, 2 * w, 4, stride=2, padding=1, bias=False), norm(2 * w, 2),
            nn.ReLU(inplace=True),  # (B, 2w, H/2, W/2)
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1, bias=False), norm(w, 2),
            nn.ReLU(inplace=True),  # (B, w, H, W)
            nn.Conv2d(w, channels, 3, padding=1), nn.Tanh(),
        )

    @staticmethod
    def _through(layers: nn.Sequential, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            x = layer(x, label) if isinstance(layer, ClassBatchNorm) else layer(x)
        return x

    def forward(self, noise: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if self.noise_scale != 1.0:
            noise = noise * self.noise_scale  # a constant in an exported graph
        z = noise if self.embed is None else torch.cat([noise, self.embed(label)], dim=1)  # (B, z_in)
        x = self._through(self.project, z, label).view(-1, self.c0, self.h0, self.w0)
        return self._through(self.body, x, label)


class Discriminator(nn.Module):
    """images (B, C, H, W) [+ class (B,)] -> one score per image (B,); higher = more real. With model.class_loss
    it also has a classifier head on the same features (`score_and_logits`)."""

    def __init__(self, cfg: GANConfig, n_classes: int, channels: int) -> None:
        super().__init__()
        w, sn = cfg.width, cfg.spectral_norm

        def conv(c_in: int, c_out: int, k: int, s: int, norm: bool) -> list[nn.Module]:
            layer = nn.Conv2d(c_in, c_out, k, stride=s, padding=1, bias=not norm or sn)
            return [spectral_norm(layer) if sn else layer, *([nn.BatchNorm2d(c_out)] if norm and not sn else []),
                    nn.LeakyReLU(0.2, inplace=True)]

        self.mbstd = cfg.minibatch_std
        last = conv(2 * w + self.mbstd, 4 * w, 3, 1, True)
        self.split = -len(last)  # the last block's modules (which see the minibatch-std channel)
        self.features = nn.Sequential(*conv(channels, w, 4, 2, False), *conv(w, 2 * w, 4, 2, True),
                                      *last)  # (B, 4w, H/4, W/4)
        head = nn.Linear(4 * w, 1)
        self.head = spectral_norm(head) if sn else head
        embed = nn.Embedding(n_classes, 4 * w) if cfg.conditional else None
        self.embed = spectral_norm(embed) if (embed is not None and sn) else embed
        self.classify = nn.Linear(4 * w, n_classes) if cfg.class_loss else None  # the config needs conditional

    def _pooled(self, images: torch.Tensor) -> torch.Tensor:
        if self.mbstd:
            x = self.features[:self.split](images)  # (B, 2w, H/4, W/4)
            return self.features[self.split:](torch.cat([x, minibatch_std(x)], dim=1)).mean(dim=(2, 3))
        return self.features(images).mean(dim=(2, 3))  # (B, 4w): mean pooling keeps scores O(1) at the start

    def _score(self, h: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        score = self.head(h).squeeze(1)  # (B,)
        if self.embed is not None:
            score = score + (self.embed(label) * h).sum(dim=1)  # the projection term
        return score

    def forward(self, images: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self._score(self._pooled(images), label)

    def score_and_logits(self, images: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The score (B,) and the class logits (B, K) of one forward pass (model.class_loss > 0 only)."""
        if self.classify is None:
            raise TypeError("this discriminator has no classifier head (model.class_loss is 0)")
        h = self._pooled(images)
        return self._score(h, label), self.classify(h)


class GAN(nn.Module):
    """Both networks and the generator's moving average; `forward` samples from the generator that is judged and
    exported (the average when there is one)."""

    def __init__(self, cfg: GANConfig, n_classes: int, channels: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.generator = Generator(cfg, n_classes, channels, size)
        self.discriminator = Discriminator(cfg, n_classes, channels)
        self.ema = copy.deepcopy(self.generator) if cfg.ema is not None else None
        if self.ema is not None:
            self.ema.requires_grad_(False)
            self.ema.noise_scale = cfg.sample_scale  # the config refuses a scale without the average

    @property
    def sampler(self) -> Generator:
        return self.ema if self.ema is not None else self.generator

    def forward(self, noise: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.sampler(noise, label)  # (B, C, H, W) in [-1, 1]


class _Uint8Sampler(nn.Module):
    """What is exported: noise (B, z) float32, class (B,) int64 -> images (B, H, W, C) uint8."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, noise: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return to_uint8(self.generator(noise, label))


@register_task("image-generation")
class ImageGeneration(Task):
    """Labelled images (N, H, W, C) uint8 -> a generator of new images, per class when conditional."""

    kind = "generation"
    data_kind = "images"
    default_model = GANConfig
    headline = "fid_ratio"  # FID / the real-vs-real floor, in the judge's feature space (lower is better)
    trainer = "adversarial"
    compressible = False  # the frontier scores labelled predictions; a generator is exported as fp32 only
    prefers_bf16 = True  # bf16 autocast + channels-last: 90 -> 42 ms a step on the AMX machine (docs/generation.md)
    # bench/gan.py, mnist5k: with R1, the class loss, TTUR 4x and mode seeking 0.5 (model defaults) every target
    # holds at 80 epochs on three seeds (docs/generation.md, fourth round); 5,040 steps, 90-105 ms each in bf16 on
    # the slowest 2-core machine seen. fp32 100 epochs of an earlier recipe: 576 s (AVX-512), 1358 s (AVX2 only).
    recipe: ClassVar[dict[str, Any]] = {
        "train": {"epochs": 80, "batch_size": 64, "lr": 2e-4, "schedule": "constant", "precision": "auto",
                  "checkpoint_every": 200},
    }

    # options whose default is on but which older runs were trained (and sampled) without
    _OFF_WHEN_ABSENT: ClassVar[dict[str, Any]] = {"r1": 0.0, "class_loss": 0.0, "sample_scale": 1.0}

    @classmethod
    def from_assets(cls, assets: dict[str, Any]) -> Task:
        """A run saved before an option existed did not use it: its absence from model/task.json means off, not
        today's default (else its weights lack the classifier head, or its samples change scale)."""
        return super().from_assets({**assets, "model": cls._OFF_WHEN_ABSENT | dict(assets["model"])})

    @property
    def gan_cfg(self) -> GANConfig:
        assert isinstance(self.model_cfg, GANConfig)
        return self.model_cfg

    @property
    def n_classes(self) -> int:
        return len(self.classes or [])

    def _fit_preprocessing(self, data: Dataset) -> dict[str, Any]:
        assert data.images is not None
        _, h, w, c = data.images.shape
        if h % 4 or w % 4 or h < 4 or w < 4:
            raise ConfigError(f"image-generation draws images in two 2x upsampling steps, so height and width must be "
                              f"multiples of 4; these are {h}x{w}. Set data.image_size (e.g. "
                              f"[{max(4, round(h / 4) * 4)}, {max(4, round(w / 4) * 4)}])")
        if self.gan_cfg.conditional and (data.classes is None or len(data.classes) < 2):
            raise ConfigError(f"model.conditional: true needs two or more classes to condition on; {data.source!r} "
                              f"has {len(data.classes or [])}. Add class folders, or set model.conditional: false "
                              "(one generator for all images)")
        counts = np.bincount(data.y("train"), minlength=len(data.classes or [1])) if data.classes else None
        return {"size": [int(h), int(w)], "channels": int(c), "z_dim": self.gan_cfg.z_dim,
                "conditional": self.gan_cfg.conditional,
                "class_counts": None if counts is None else [int(n) for n in counts]}

    # ------------------------------------------------------------------ data to tensors
    def encode(self, frame: pd.DataFrame | None, images: np.ndarray | None) -> Tensors:
        if images is None:
            raise ValueError("image-generation needs images")
        h, w = self.prep["size"]
        c = self.prep["channels"]
        if images.ndim != 4 or images.shape[1:] != (h, w, c):
            raise ValueError(f"expected images of shape (N, {h}, {w}, {c}), got {images.shape}")
        return {"pixels": torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))}  # uint8 (N, C, H, W)

    def encode_targets(self, y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(y, dtype=np.int64))

    def make_batch(self, inputs: Tensors, idx: torch.Tensor, *, train: bool, gen: torch.Generator) -> Tensors:
        return {"pixels": inputs["pixels"][idx].float() / 127.5 - 1}  # (B, C, H, W) in [-1, 1]

    def noise(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.prep["z_dim"], generator=gen)  # (n, z)

    # ------------------------------------------------------------------ model, losses
    def build_model(self, pretrained: bool = True) -> nn.Module:
        h, w = self.prep["size"]
        return GAN(self.gan_cfg, max(1, self.n_classes), self.prep["channels"], (h, w))

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The discriminator's loss from its scores (B,) on real and on generated images."""
        if self.gan_cfg.loss == "hinge":
            return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        """The generator's loss from the discriminator's scores (B,) on its images."""
        if self.gan_cfg.loss == "hinge":
            return -fake.mean()
        return F.softplus(-fake).mean()

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise TrainError("image-generation has no supervised loss; it trains adversarially (Task.d_loss / g_loss)")

    def postprocess(self, outputs: torch.Tensor) -> np.ndarray:
        return to_uint8(outputs).numpy()  # (B, H, W, C) uint8

    def quick_metrics(self, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
        return {}

    def param_count(self, model: nn.Module) -> int:
        assert isinstance(model, GAN)
        return sum(p.numel() for p in model.generator.parameters())  # what is exported and served

    def spec(self, email: dict[str, Any] | None = None) -> dict[str, Any]:
        """What `runtime.generate.ImageGenerator` reads (signature.json of the package): noise length, image
        shape, classes; the network maps {noise, class} to uint8 images."""
        if not self.fitted:
            raise RuntimeError("task is not fitted")
        h, w = self.prep["size"]
        return {"task": self.name, "kind": self.kind, "data_kind": self.data_kind, "classes": self.classes,
                "output_transform": None, "decision": None, "preprocessing": {},
                "generation": {"z_dim": self.prep["z_dim"], "size": [h, w], "channels": self.prep["channels"],
                               "conditional": self.prep["conditional"], "range": "uint8"}}

    # ------------------------------------------------------------------ export
    def export_module(self, model: nn.Module) -> nn.Module:
        """noise, class -> (B, H, W, C) uint8 images from the judged generator (the moving average)."""
        assert isinstance(model, GAN)
        return _Uint8Sampler(model.sampler).eval()
