"""image-classification: a small VGG-style CNN family with batched random affine augmentation."""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from shipml.config import AugmentConfig, CNNConfig, DistillConfig
from shipml.data.dataset import Dataset
from shipml.tasks._registry import register_task
from shipml.tasks.base import ClassificationTask, Task, Tensors
from shipml.tasks.structure import Group, sequential_groups

__all__ = ["CNN", "ImageClassification", "random_affine"]


class CNN(nn.Module):
    """Stages of (conv3x3 -> [bn] -> relu) x blocks, each stage followed by 2x2 max-pooling."""

    def __init__(self, in_channels: int, n_classes: int, size: tuple[int, int], cfg: CNNConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, (h, w) = in_channels, size
        for stage in range(cfg.depth):
            c_out = cfg.width * 2**stage
            for _ in range(cfg.blocks):
                layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, bias=not cfg.batchnorm))
                if cfg.batchnorm:
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(nn.ReLU(inplace=True))
                c_in = c_out
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
        if h > 4 or w > 4:  # large inputs: average down so the classifier stays small
            layers.append(nn.AdaptiveAvgPool2d((min(h, 4), min(w, 4))))
            h, w = min(h, 4), min(w, 4)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(cfg.dropout), nn.Linear(c_in * h * w, n_classes))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pixels))  # (B, C, H, W) -> (B, n_classes)


def random_affine(x: torch.Tensor, aug: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Random rotation, shift and zoom-in crop per image, as one batched grid_sample."""
    b = x.shape[0]
    u = torch.rand(b, 4, generator=gen) * 2 - 1  # (B, 4) in [-1, 1): angle, dx, dy, area
    angle = u[:, 0] * math.radians(aug.rotation)
    shift = u[:, 1:3] * aug.shift * 2  # translation in normalised [-1, 1] coordinates
    area = aug.crop + (1 - aug.crop) * (u[:, 3] + 1) / 2
    scale = area.sqrt()  # < 1 samples a smaller region: a zoomed-in crop
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@register_task("image-classification")
class ImageClassification(ClassificationTask):
    """Images (N, H, W, C) uint8 -> class probabilities."""

    data_kind = "images"
    default_model = CNNConfig
    prefers_bf16 = True  # bench/train_throughput.py: ~2x samples/s with bf16 autocast on AMX CPUs
    recipe: ClassVar[dict[str, Any]] = {  # bench/foundation.py: MNIST 5k -> 99.8% test accuracy in ~30 s on 2 cores
        "task": {"augment": AugmentConfig().model_dump()},
        "train": {"epochs": 15, "batch_size": 64, "lr": 2e-3, "weight_decay": 5e-4, "schedule": "cosine"},
    }

    @property
    def augment(self) -> AugmentConfig:
        return self.task_cfg.augment or AugmentConfig()

    def _fit_preprocessing(self, data: Dataset) -> dict[str, Any]:
        assert data.images is not None
        train = data.images[data.indices("train")].astype(np.float64) / 255.0  # (N, H, W, C)
        mean = train.mean(axis=(0, 1, 2))
        std = train.std(axis=(0, 1, 2))
        _, h, w, c = data.images.shape
        return {
            "size": [int(h), int(w)],
            "channels": int(c),
            "scale": 1 / 255,
            "mean": [float(m) for m in mean],
            "std": [float(s) if s > 1e-6 else 1.0 for s in std],
            "layout": "NCHW",
        }

    def encode(self, frame: pd.DataFrame | None, images: np.ndarray | None) -> Tensors:
        if images is None:
            raise ValueError("image-classification needs images")
        h, w = self.prep["size"]
        c = self.prep["channels"]
        if images.ndim != 4 or images.shape[1:] != (h, w, c):
            raise ValueError(f"expected images of shape (N, {h}, {w}, {c}), got {images.shape}")
        # stored as uint8 (4x smaller than float); converted per batch
        return {"pixels": torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))}

    def make_batch(self, inputs: Tensors, idx: torch.Tensor, *, train: bool, gen: torch.Generator) -> Tensors:
        x = inputs["pixels"][idx].float() * self.prep["scale"]  # (B, C, H, W) in [0, 1]
        aug = self.augment
        if train and (aug.shift or aug.rotation or aug.crop < 1):
            x = random_affine(x, aug, gen)
        mean = torch.tensor(self.prep["mean"]).view(1, -1, 1, 1)
        std = torch.tensor(self.prep["std"]).view(1, -1, 1, 1)
        x = (x - mean) / std
        return {"pixels": x.contiguous(memory_format=torch.channels_last)}

    def build_model(self, pretrained: bool = True) -> nn.Module:
        assert isinstance(self.model_cfg, CNNConfig)
        h, w = self.prep["size"]
        model = CNN(self.prep["channels"], self.n_classes, (h, w), self.model_cfg)
        return model.to(memory_format=torch.channels_last)  # measured faster with oneDNN on CPU

    # ------------------------------------------------------------------ architecture hooks
    def prunable_groups(self, model: nn.Module, example: Tensors) -> list[Group]:
        """Every conv layer's output channels; the last one's are consumed by the head's Linear through the
        flattened (C, h, w) map, so each channel owns h*w of its input columns."""
        assert isinstance(model, CNN)
        with torch.no_grad():
            fmap = model.features(example["pixels"][:1].float())  # (1, C, h, w)
        linear = next(m for m in model.head if isinstance(m, nn.Linear))
        return sequential_groups(list(model.features), linear, fmap.shape[2] * fmap.shape[3], nn.Conv2d, "conv")

    def make_student(self, model: nn.Module, cfg: DistillConfig) -> tuple[nn.Module, Task, dict[str, Any]]:
        """The same CNN at `cfg.width` times the channels, from scratch (a thinner net keeps the receptive
        field, which a shallower one would not)."""
        assert isinstance(self.model_cfg, CNNConfig)
        student = copy.copy(self)
        student.model_cfg = self.model_cfg.model_copy(update={"width": max(1, round(self.model_cfg.width * cfg.width))})
        return student.build_model(pretrained=False), student, {"width": student.model_cfg.width,
                                                                 "teacher_width": self.model_cfg.width}
