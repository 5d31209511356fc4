"""`infer_data`: a quick look at a data set so `shipml init` can write a config that fits it.

Fast by design: tables are read (they must be anyway to count rows), but images are only counted
from their paths and up to 200 of them opened for their header (size and mode), never decoded.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from PIL import Image

from shipml.data.clean import category_text
from shipml.data.dataset import CleaningLog
from shipml.data.images import GREY_MODES, discover_images
from shipml.data.load import resolve_source
from shipml.data.sources import read_table, sklearn_name, sklearn_table, table_format

__all__ = ["DataProfile", "infer_data"]

TARGET_NAMES = ("label", "target", "class", "y", "category")  # in order of preference
MAX_SHOWN_CLASSES = 50
MAX_INT_CLASSES = 20  # an integer target with at most this many values is read as class ids
IMAGE_SAMPLE = 200


@dataclass
class DataProfile:
    """What a data set looks like, as `shipml init` needs it to propose a config."""

    path: str
    kind: Literal["table", "images"]
    format: str  # csv | jsonl | parquet | images | sklearn
    rows: int  # table rows, or number of image files
    task: str  # image-classification | tabular-classification | tabular-regression
    target: str | None  # guessed label column; images: None (labels are folder names)
    columns: dict[str, str] = field(default_factory=dict)  # tables: column -> dtype
    n_classes: int | None = None
    classes: dict[str, int] | None = None  # up to 50 most frequent classes with their counts
    image_size: tuple[int, int] | None = None  # most common (height, width) in the sample
    channels: int | None = None  # 1 if every sampled image is greyscale, else 3
    split_folders: bool = False  # images: root/{train,val,test}/<class>/ layout
    archive: bool = False  # the path is a .zip/.tar.* archive

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (tuples become lists)."""
        out = asdict(self)
        if self.image_size is not None:
            out["image_size"] = list(self.image_size)
        return out


def infer_data(path: str) -> DataProfile:
    """Profile a data path (file, folder, archive or sklearn:<name>) without cleaning or splitting it."""
    if path.startswith("sklearn:"):
        name = sklearn_name(path)
        return _profile_table(path, sklearn_table(name, "label"), "sklearn", archive=False)
    root, kind = resolve_source(path, "auto", None, CleaningLog())
    archive = root != Path(path).expanduser()
    if kind == "images":
        return _profile_images(path, root, archive)
    return _profile_table(path, read_table(root), table_format(root) or "csv", archive)


def guess_target(columns: list[str]) -> str:
    """A column named like a label (label/target/class/y/category, any case), else the last one."""
    lowered = {c.lower(): c for c in reversed(columns)}  # reversed: the first of equal names wins
    for name in TARGET_NAMES:
        if name in lowered:
            return lowered[name]
    return columns[-1]


def _is_classification(values: pd.Series) -> bool:
    values = values.dropna()
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return True
    numbers = values.to_numpy(dtype=np.float64)
    return bool(np.all(numbers == np.round(numbers))) and values.nunique() <= MAX_INT_CLASSES


def _profile_table(path: str, frame: pd.DataFrame, fmt: str, archive: bool) -> DataProfile:
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    target = guess_target(columns)
    classification = _is_classification(frame[target])
    profile = DataProfile(
        path=path,
        kind="table",
        format=fmt,
        rows=len(frame),
        task="tabular-classification" if classification else "tabular-regression",
        target=target,
        columns={c: str(frame[c].dtype) for c in columns},
        archive=archive,
    )
    if classification:
        counts = category_text(frame[target]).str.strip().value_counts()
        profile.n_classes = len(counts)
        profile.classes = {str(k): int(v) for k, v in counts.head(MAX_SHOWN_CLASSES).items()}
    return profile


def _profile_images(path: str, root: Path, archive: bool) -> DataProfile:
    layout = discover_images(root)
    picks = np.unique(np.linspace(0, len(layout) - 1, min(IMAGE_SAMPLE, len(layout))).astype(int))
    sizes: Counter[tuple[int, int]] = Counter()
    modes: set[str] = set()
    for i in picks:
        try:
            with Image.open(layout.base / layout.relpaths[i]) as im:
                sizes[(im.size[1], im.size[0])] += 1
                modes.add(im.mode)
        except Exception:  # a corrupt sample says nothing about the others; loading will list it
            continue
    counts = Counter(layout.labels)
    return DataProfile(
        path=path,
        kind="images",
        format="images",
        rows=len(layout),
        task="image-classification",
        target=None,
        n_classes=len(counts),
        classes=dict(counts.most_common(MAX_SHOWN_CLASSES)),
        image_size=sizes.most_common(1)[0][0] if sizes else None,
        channels=(1 if modes <= GREY_MODES else 3) if modes else None,
        split_folders=layout.split_folders,
        archive=archive,
    )
