"""Generation: (class, n, seed) -> n new images, the one path a run, a package and the server share.

A generation spec (signature.json of an image-generation package, or `Task.spec` of its run) says the
noise length, the classes and the image shape. The noise is drawn here, with numpy, from the seed alone, so
`shipml generate --seed 1` draws the same images from a run (PyTorch) and from its package (onnxruntime).
The network is any callable `{"noise": (B, z) float32, "class": (B,) int64} -> (B, H, W, C) uint8`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shipml.errors import DataError, ExportError

__all__ = ["MAX_IMAGES", "ImageGenerator", "check_generation_spec", "grid_png", "noise", "png"]

ImageNetwork = Callable[[dict[str, np.ndarray]], np.ndarray]  # feeds -> (B, H, W, C) uint8
MAX_IMAGES = 1024  # per call: 1024 28x28 images are 800 KB; a typo such as --n 1000000 is refused, not run


def noise(seed: int, n: int, z_dim: int) -> np.ndarray:
    """(n, z_dim) float32 standard normal noise, a function of the seed alone."""
    return np.random.default_rng(seed).standard_normal((n, z_dim), dtype=np.float32)


def check_generation_spec(spec: dict[str, Any], where: Path | str) -> None:
    gen = spec.get("generation")
    if not isinstance(gen, dict) or not isinstance(gen.get("z_dim"), int) or not isinstance(gen.get("size"), list):
        raise ExportError(f"{where}: a generation signature needs `generation` with z_dim, size, channels; "
                          "re-export the package")
    classes = spec.get("classes")
    if gen.get("conditional") and (not isinstance(classes, list) or len(classes) < 2):
        raise ExportError(f"{where}: a conditional generator needs `classes` (two or more); re-export the package")


def png(image: np.ndarray) -> bytes:
    """One (H, W, C) uint8 image as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return buf.getvalue()


def grid_png(images: np.ndarray, per_row: int | None = None, gap: int = 2) -> bytes:
    """(N, H, W, C) uint8 images tiled into one PNG, `per_row` across (default: a near-square grid)."""
    n, h, w, c = images.shape
    per_row = per_row or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / per_row)
    canvas = np.full((rows * (h + gap) + gap, per_row * (w + gap) + gap, c), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, per_row)
        y, x = gap + r * (h + gap), gap + k * (w + gap)
        canvas[y:y + h, x:x + w] = img
    return png(canvas)


class ImageGenerator:
    """A generation spec around any image network."""

    def __init__(self, spec: dict[str, Any], *, where: Path | str) -> None:
        check_generation_spec(spec, where)
        self.spec, self.where = spec, where
        self.gen: dict[str, Any] = spec["generation"]

    @property
    def classes(self) -> list[str] | None:
        return list(self.spec["classes"]) if self.gen.get("conditional") else None

    @property
    def conditional(self) -> bool:
        return bool(self.gen.get("conditional"))

    def class_index(self, label: str | int | None) -> int:
        """The index of a class name; a conditional generator needs one, an unconditional one takes none."""
        classes = self.classes
        if classes is None:
            if label is not None:
                raise DataError(f"this generator is unconditional: it draws from every class and takes no class "
                                f"(got {label!r}); leave --class out")
            return 0
        if label is None:
            raise DataError(f"this generator draws one class at a time; give one of: {', '.join(classes)}")
        if str(label) not in classes:
            raise DataError(f"class {label!r} is not one this generator knows; classes: {', '.join(classes)}")
        return classes.index(str(label))

    def feeds(self, label: str | int | None, n: int, seed: int) -> dict[str, np.ndarray]:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_IMAGES:
            raise DataError(f"n must be a whole number from 1 to {MAX_IMAGES}, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise DataError(f"seed must be a whole number from 0 to 2**63-1, got {seed!r}")
        idx = self.class_index(label)
        return {"noise": noise(seed, n, int(self.gen["z_dim"])), "class": np.full(n, idx, dtype=np.int64)}

    def generate(self, label: str | int | None, n: int, seed: int, network: ImageNetwork,
                 batch_size: int = 256) -> np.ndarray:
        """(n, H, W, C) uint8 images of `label` (None for an unconditional generator), determined by `seed`."""
        feeds = self.feeds(label, n, seed)
        h, w = self.gen["size"]
        shape = (h, w, int(self.gen["channels"]))
        parts = []
        for s in range(0, n, batch_size):
            got = np.asarray(network({k: v[s:s + batch_size] for k, v in feeds.items()}))
            if got.dtype != np.uint8 or got.shape[1:] != shape:
                raise ExportError(f"the generator in {self.where} returned {got.dtype} {got.shape}, expected uint8 "
                                  f"(B, {', '.join(map(str, shape))}); re-export the package")
            parts.append(got)
        return np.concatenate(parts)
