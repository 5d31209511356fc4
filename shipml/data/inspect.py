"""`infer_data`: a quick look at a data set so `shipml init` can write a config that fits it.

Fast by design: tables are read (they must be anyway to count rows), but images are only counted
from their paths and up to 200 of them opened for their header (size and mode), never decoded;
email folders are counted from their paths and up to 50 messages parsed (for the text length).

A table is text data when it has a long-text column: one named text/body/message/content/review/
comment (any case) holding free text, or any string column whose median length is over 40 chars.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from PIL import Image

from shipml.config import EmailConfig
from shipml.core.email import message_text
from shipml.data.clean import MAX_CLASSES, category_text
from shipml.data.dataset import CleaningLog
from shipml.data.images import GREY_MODES, discover_images
from shipml.data.load import read_table_logged, resolve_source
from shipml.data.mail_folder import discover_messages, read_message
from shipml.data.sources import sklearn_name, sklearn_table, table_format
from shipml.errors import ShipmlWarning

__all__ = ["DataProfile", "infer_data"]

TARGET_NAMES = ("label", "target", "class", "y", "category")  # in order of preference
MAX_SHOWN_CLASSES = 50
MAX_INT_CLASSES = 20  # an integer target with at most this many values is read as class ids
IMAGE_SAMPLE = 200
EMAIL_SAMPLE = 50
TEXT_NAMES = ("text", "body", "message", "content", "review", "comment")  # in order of preference
LONG_TEXT_CHARS = 40  # a string column with a longer median is free text, whatever its name


@dataclass
class DataProfile:
    """What a data set looks like, as `shipml init` needs it to propose a config."""

    path: str
    kind: Literal["table", "images", "text"]  # text: a table with a text column, or an email folder
    format: str  # csv | jsonl | parquet | images | emails | sklearn
    rows: int  # table rows, number of image files or of message files
    task: str  # image-classification | text-classification | tabular-classification | tabular-regression
    target: str | None  # guessed label column; images, emails: None (labels are folder names)
    columns: dict[str, str] = field(default_factory=dict)  # tables: column -> dtype
    n_classes: int | None = None
    classes: dict[str, int] | None = None  # up to 50 most frequent classes with their counts
    image_size: tuple[int, int] | None = None  # most common (height, width) in the sample
    channels: int | None = None  # 1 if every sampled image is greyscale, else 3
    split_folders: bool = False  # images, emails: root/{train,val,test}/<class>/ layout
    archive: bool = False  # the path is a .zip/.tar.* archive
    text_column: str | None = None  # the column holding the text (emails: "text", what the loader names it)
    text_length: int | None = None  # median characters of the text (sampled), to size the tokenizer input
    warnings: list[str] = field(default_factory=list)  # e.g. duplicate column names in a CSV header

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
    log = CleaningLog()
    root, kind = resolve_source(path, "auto", None, log)
    archive = root != Path(path).expanduser()
    if kind == "images":
        return _profile_images(path, root, archive)
    if kind == "emails":
        return _profile_emails(path, root, archive)
    frame = read_table_logged(root, "auto", log)
    for message in log.warnings:  # still a warning for callers that show none of the profile's fields
        warnings.warn(message, ShipmlWarning, stacklevel=2)
    profile = _profile_table(path, frame, table_format(root) or "csv", archive)
    profile.warnings = list(log.warnings)
    return profile


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


def _median_length(values: pd.Series) -> float:
    sample = values.dropna().head(1000)
    return float(sample.map(lambda v: len(str(v))).median()) if len(sample) else 0.0


def guess_text_column(frame: pd.DataFrame) -> str | None:
    """The column holding free text (see the module docstring), or None."""
    n = len(frame)
    texts = []
    for c, dtype in frame.dtypes.items():
        if not (pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)):
            continue  # numbers, booleans, dates: never free text (and 50,000 of them are checked in no time)
        col = frame[c]
        if pd.api.types.infer_dtype(col.head(1000), skipna=True) != "string":
            continue
        if col.head(1000).nunique() > min(MAX_CLASSES, 0.5 * min(n, 1000)):  # free text, not a label
            texts.append(str(c))
    lowered = {c.lower(): c for c in reversed(texts)}
    for name in TEXT_NAMES:
        if name in lowered:
            return lowered[name]
    lengths = {c: _median_length(frame[c]) for c in texts}
    best = max(lengths, key=lengths.__getitem__, default=None)
    return best if best is not None and lengths[best] > LONG_TEXT_CHARS else None


def _profile_table(path: str, frame: pd.DataFrame, fmt: str, archive: bool) -> DataProfile:
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    text = guess_text_column(frame) if len(columns) > 1 else None
    target = guess_target([c for c in columns if c != text])
    classification = _is_classification(frame[target])
    is_text = text is not None and classification
    task = "tabular-classification" if classification else "tabular-regression"
    profile = DataProfile(
        path=path,
        kind="text" if is_text else "table",
        format=fmt,
        rows=len(frame),
        task="text-classification" if is_text else task,
        target=target,
        columns={str(c): str(t) for c, t in frame.dtypes.items()},
        archive=archive,
        text_column=text,
        text_length=None if text is None else round(_median_length(frame[text])),
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


def _profile_emails(path: str, root: Path, archive: bool) -> DataProfile:
    layout = discover_messages(root)
    picks = np.unique(np.linspace(0, len(layout) - 1, min(EMAIL_SAMPLE, len(layout))).astype(int))
    email = EmailConfig()
    lengths = []
    for i in picks:
        try:
            raw = read_message(layout.base / layout.relpaths[i])
        except OSError:  # an unreadable sample says nothing about the others; loading will list it
            continue
        lengths.append(len(message_text(raw, headers=email.headers, body=email.body, max_chars=email.max_chars)))
    counts = Counter(layout.labels)
    return DataProfile(
        path=path,
        kind="text",
        format="emails",
        rows=len(layout),
        task="text-classification",
        target=None,
        n_classes=len(counts),
        classes=dict(counts.most_common(MAX_SHOWN_CLASSES)),
        split_folders=layout.split_folders,
        archive=archive,
        text_column="text",
        text_length=round(float(np.median(lengths))) if lengths else None,
    )
