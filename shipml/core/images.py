"""Image files: which files are images, walking folders of them, and decoding one to pixels.

Training (`shipml.data`) and prediction (`shipml.runtime`) both decode through `to_array`, so a served
image is preprocessed like a trained one: 16-bit grey scaled to 8 bits, PIL `convert` to L or RGB, then a
bilinear resize to (H, W). Folder walks skip hidden files and folders (`.*`, `__MACOSX`), follow folder
links but never loop, and treat an entry that cannot be stat'ed (a dangling or self-referencing link) as
not a folder, so one bad link cannot stop a walk.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["GREY_MODES", "IMAGE_SUFFIXES", "decode_file", "is_hidden", "is_image", "iter_files", "list_children",
           "to_array"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
GREY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}


def is_hidden(name: str) -> bool:
    """Dot files and macOS archive litter are never data."""
    return name.startswith(".") or name == "__MACOSX"


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # ELOOP (a link to itself), EACCES: not a folder we can walk
        return False


def list_children(folder: Path) -> tuple[list[Path], list[Path]]:
    """Visible sub-folders and files of a folder, each sorted by name (an entry that cannot be stat'ed
    counts as a file, so the caller reports it instead of crashing)."""
    dirs, files = [], []
    with os.scandir(folder) as it:
        for entry in it:
            if is_hidden(entry.name):
                continue
            (dirs if _is_dir(entry) else files).append(Path(entry.path))
    return sorted(dirs), sorted(files)


def iter_files(folder: Path, keep: Callable[[str], bool] = lambda name: True) -> Iterator[os.DirEntry[str]]:
    """Visible files anywhere below `folder` whose name passes `keep`, following folder links but never in
    a cycle (unordered: sort the result when order matters)."""
    seen: set[tuple[int, int]] = set()
    stack = [Path(folder)]
    while stack:
        current = stack.pop()
        try:
            st = current.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        try:
            with os.scandir(current) as it:
                entries = list(it)
        except OSError:  # unreadable folder: nothing in it can be data
            continue
        for entry in entries:
            if is_hidden(entry.name):
                continue
            if _is_dir(entry):
                stack.append(Path(entry.path))
            elif keep(entry.name):
                yield entry


def to_array(im: Image.Image, size: tuple[int, int], channels: int) -> tuple[np.ndarray, bool]:
    """One opened image as (H, W, C) uint8 in the target size and channels; also: was it resized."""
    if im.mode.startswith("I;16"):  # 16-bit grey: PIL's convert would clip at 255, so scale instead
        im = Image.fromarray((np.asarray(im, dtype=np.float32) / 257.0).round().astype(np.uint8), "L")
    target_mode = "L" if channels == 1 else "RGB"
    if im.mode != target_mode:
        im = im.convert(target_mode)
    resized = im.size != (size[1], size[0])
    if resized:
        im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)  # PIL sizes are (W, H)
    arr = np.asarray(im, dtype=np.uint8)
    return (arr[..., None] if arr.ndim == 2 else arr), resized


def decode_file(path: Path, size: tuple[int, int], channels: int) -> tuple[np.ndarray, bool]:
    """Decode one image file (see `to_array`); PIL's many exception types propagate to the caller."""
    with Image.open(path) as im:
        return to_array(im, size, channels)
