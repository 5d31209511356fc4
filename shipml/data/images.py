"""Image folders: finding the image files, their classes and any split folders (nothing decoded here).

Layouts understood (suffixes case-insensitive, hidden files and __MACOSX ignored, nesting allowed
inside a class folder, one wrapping top folder allowed):

    root/<class>/**/*.png                       the split is drawn
    root/{train,val,test}/<class>/**/*.png      the split is given (missing splits carved from train)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shipml.core.images import GREY_MODES, IMAGE_SUFFIXES, is_image, iter_files, list_children
from shipml.data.layout import SPLIT_FOLDERS, FileLayout
from shipml.errors import DataError

__all__ = ["GREY_MODES", "IMAGE_SUFFIXES", "ImageLayout", "discover_images", "has_images"]

_is_image = is_image


@dataclass
class ImageLayout(FileLayout):
    """The image files of a data set (see FileLayout)."""

    loose: int = 0  # images lying outside any class folder (ignored)


def _iter_images(folder: Path) -> Iterator[os.DirEntry[str]]:
    """Visible image files anywhere below `folder`, following folder links but never in a cycle."""
    return iter_files(folder, is_image)


def has_images(folder: Path) -> bool:
    """True when any visible file below `folder` has an image suffix (stops at the first)."""
    return next(_iter_images(folder), None) is not None


def _walk_class(folder: Path, base: Path, label: str, split: str, out: ImageLayout) -> None:
    for entry in _iter_images(folder):
        rel = Path(entry.path).relative_to(base).as_posix()
        try:
            st = entry.stat()  # follows links: ELOOP for `x.png -> x.png`, ENOENT for a dangling one
        except OSError as err:  # one bad entry is skipped and recorded, never the end of the walk
            out.unreadable.append((rel, f"cannot be opened ({err.strerror or err})"))
            continue
        out.add(rel, label, split, (st.st_size, st.st_mtime_ns))


def _no_images(base: Path) -> DataError:
    return DataError(
        f"no images found under {base}; expected root/<class>/*.png (one folder per class) or "
        "root/train/<class>/*.png + root/test/<class>/*.png, with .png/.jpg/.jpeg/.bmp/.gif/.webp files"
    )


def discover_images(base: Path) -> ImageLayout:
    """Find the class (and split) folders under `base` and list their image files."""
    top = base
    while True:  # unwrap single wrapping folders such as mnist5k.tar.gz -> mnist5k/<digit>/
        dirs, files = list_children(top)
        if (
            len(dirs) == 1
            and not any(_is_image(f.name) for f in files)
            and dirs[0].name.lower() not in SPLIT_FOLDERS
            and list_children(dirs[0])[0]
        ):
            top = dirs[0]
            continue
        break
    layout = ImageLayout(base=base)
    layout.loose = sum(_is_image(f.name) for f in files)
    split_dirs = {d: SPLIT_FOLDERS.get(d.name.lower()) for d in dirs}
    if dirs and all(split_dirs.values()):
        if "train" not in split_dirs.values():
            raise DataError(
                f"{top} has split folders {', '.join(d.name for d in dirs)} but no train/; "
                "add train/<class>/ or put the classes directly under the root"
            )
        layout.split_folders = True
        for split_dir, split in split_dirs.items():
            class_dirs, loose = list_children(split_dir)
            layout.loose += sum(_is_image(f.name) for f in loose)
            for class_dir in class_dirs:
                _walk_class(class_dir, base, class_dir.name, split or "", layout)
    else:
        for class_dir in dirs:
            _walk_class(class_dir, base, class_dir.name, "", layout)
    if not layout.relpaths:
        raise _no_images(base)
    layout.sort()
    return layout
