"""Decoding images once: pixels in one size and channel count, cached in the shipml cache.

Decoding is the slow part of loading images, so its result is cached under
`cache_dir()/images/<key>.npz`, where the key covers the folder, every file's relative path, size and
mtime, and the requested size and channels: touching any image, or asking for another size, decodes
again. Training and prediction share `shipml.core.images.to_array`, so a served image is preprocessed like
a trained one: 16-bit grey scaled to 8 bits, PIL `convert` to L or RGB, then a bilinear resize to (H, W).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from shipml.core.images import GREY_MODES, decode_file, to_array
from shipml.data.cache import atomic_write_bytes, cache_subdir
from shipml.data.dataset import CleaningLog
from shipml.data.images import ImageLayout
from shipml.errors import DataError

__all__ = ["conform_pixels", "load_pixels", "pixel_keys"]

_CACHE_VERSION = 1  # bump when decoding changes, so stale cache entries are never read


def _decode_one(path: Path, size: tuple[int, int], channels: int) -> tuple[np.ndarray, bool]:
    return decode_file(path, size, channels)


def _reason(err: Exception) -> str:
    return f"not a readable image ({str(err) or type(err).__name__})"


def _cache_key(layout: ImageLayout, size: tuple[int, int] | None, channels: int | None) -> str:
    h = hashlib.sha256()
    # the folder itself is part of the key: two archives may hold equally named, equally sized files
    h.update(json.dumps([_CACHE_VERSION, str(layout.base.resolve()), size and list(size), channels]).encode())
    for rel, (nbytes, mtime) in zip(layout.relpaths, layout.stats, strict=True):
        h.update(f"{rel}\0{nbytes}\0{mtime}\n".encode())
    return h.hexdigest()


def _decode_all(
    layout: ImageLayout, size: tuple[int, int] | None, channels: int | None
) -> tuple[np.ndarray, dict[str, object]]:
    """Header pass (sizes, modes) then decode pass; corrupt files are skipped, never fatal."""
    skipped: list[dict[str, str]] = []
    ok: list[int] = []
    sizes: Counter[tuple[int, int]] = Counter()
    modes: set[str] = set()
    native: dict[int, tuple[int, int]] = {}
    for i, rel in enumerate(layout.relpaths):
        try:
            with Image.open(layout.base / rel) as im:
                native[i] = (im.size[1], im.size[0])
                modes.add(im.mode)
        except Exception as err:  # PIL raises many exception types on corrupt input; all mean "skip"
            skipped.append({"item": rel, "reason": _reason(err)})
            continue
        sizes[native[i]] += 1
        ok.append(i)
    if not ok:
        raise DataError(
            f"none of the {len(layout)} image files under {layout.base} could be read "
            f"(first: {skipped[0]['item']}: {skipped[0]['reason']})"
        )
    size = size or sizes.most_common(1)[0][0]
    channels = channels or (1 if modes <= GREY_MODES else 3)
    pixels = np.empty((len(ok), size[0], size[1], channels), dtype=np.uint8)  # (N, H, W, C)
    kept: list[int] = []
    resized = 0
    for i in ok:
        try:
            arr, was_resized = _decode_one(layout.base / layout.relpaths[i], size, channels)
        except Exception as err:  # truncated files often pass the header pass and fail here
            skipped.append({"item": layout.relpaths[i], "reason": _reason(err)})
            continue
        pixels[len(kept)] = arr
        kept.append(i)
        resized += was_resized
    meta = {
        "version": _CACHE_VERSION,
        "size": list(size),
        "channels": channels,
        "relpaths": [layout.relpaths[i] for i in kept],
        "labels": [layout.labels[i] for i in kept],
        "skipped": sorted(skipped, key=lambda s: s["item"]),
        "resized": resized,
    }
    return pixels[: len(kept)], meta


def load_pixels(
    layout: ImageLayout, size: tuple[int, int] | None, channels: int | None, log: CleaningLog
) -> tuple[np.ndarray, list[int]]:
    """Decoded (N, H, W, C) uint8 pixels of `layout` and the indices of the readable items.

    Served from the decode cache when the files and the requested size/channels are unchanged.
    """
    path = cache_subdir("images") / f"{_cache_key(layout, size, channels)}.npz"
    pixels, meta = None, None
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                pixels, meta = npz["pixels"], json.loads(str(npz["meta"]))
            log.action(f"loaded {len(pixels)} decoded images from the decode cache ({path.name})")
        except Exception:  # a damaged cache entry is rebuilt, never trusted
            pixels, meta = None, None
    if pixels is None or meta is None:
        pixels, meta = _decode_all(layout, size, channels)
        log.action(
            f"decoded {len(pixels)} images to {meta['size'][0]}x{meta['size'][1]}x{meta['channels']} "
            f"({'greyscale' if meta['channels'] == 1 else 'RGB'})"
        )
        buf = io.BytesIO()
        np.savez(buf, pixels=pixels, meta=np.array(json.dumps(meta)))
        try:
            atomic_write_bytes(path, buf.getvalue())
        except OSError as err:
            log.warn(f"could not write the image decode cache {path}: {err}; the next load decodes again")
    if meta["resized"]:
        log.action(f"resized {meta['resized']} images of other sizes to {meta['size'][0]}x{meta['size'][1]}")
    for item in meta["skipped"]:
        log.skip(item["item"], item["reason"])
    if meta["skipped"]:
        log.warn(f"skipped {len(meta['skipped'])} unreadable image files (listed under 'skipped')")
    index = {rel: i for i, rel in enumerate(layout.relpaths)}
    return pixels, [index[rel] for rel in meta["relpaths"]]


def conform_pixels(pixels: np.ndarray, size: tuple[int, int] | None, channels: int | None) -> np.ndarray:
    """Resize / change channels of already-decoded (N, H, W, C) uint8 images (bundled sets)."""
    n, h, w, c = pixels.shape
    size = size or (h, w)
    channels = channels or c
    if size == (h, w) and channels == c:
        return pixels
    out = np.empty((n, size[0], size[1], channels), dtype=np.uint8)
    for i in range(n):
        im = Image.fromarray(pixels[i, :, :, 0] if c == 1 else pixels[i], "L" if c == 1 else "RGB")
        out[i] = to_array(im, size, channels)[0]
    return out


def pixel_keys(pixels: np.ndarray) -> np.ndarray:
    """(N,) uint64 content hash per image: equal pixels, equal key (for duplicates and leakage)."""
    keys = np.empty(len(pixels), dtype=np.uint64)
    for i in range(len(pixels)):
        digest = hashlib.blake2b(np.ascontiguousarray(pixels[i]).tobytes(), digest_size=8).digest()
        keys[i] = int.from_bytes(digest, "little")
    return keys
