"""The cleaned, split data set that every later room reads, and the log of what cleaning did."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = ["SPLITS", "CleaningLog", "Dataset"]

SPLITS = ("train", "val", "test")


@dataclass
class CleaningLog:
    """What loading and cleaning did, in words a user can act on (shown in the CLI and the report)."""

    actions: list[str] = field(default_factory=list)  # e.g. "removed 12 exact duplicate rows"
    warnings: list[str] = field(default_factory=list)  # e.g. "class 'x' has 1 row; dropped"
    skipped: list[dict[str, str]] = field(default_factory=list)  # [{"item": "a/b.png", "reason": "..."}]

    def action(self, msg: str) -> None:
        self.actions.append(msg)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)

    def skip(self, item: str, reason: str) -> None:
        self.skipped.append({"item": item, "reason": reason})

    def to_dict(self) -> dict[str, Any]:
        return {"actions": self.actions, "warnings": self.warnings, "skipped": self.skipped}


@dataclass
class Dataset:
    """A cleaned data set with its split.

    kind "table": `frame` holds the feature columns and the target column.
    kind "images": `frame` holds `source` (path of the image inside the data set) and the target
    column; `images` holds the decoded pixels, row-aligned with `frame`.
    kind "text": `frame` holds the text column (`features == [text column]`), the target column and,
    where rows come from files (emails), `source` (path of the file inside the data set).
    Labels of classification data are normalised strings; `classes` lists them sorted.
    """

    kind: Literal["table", "images", "text"]
    frame: pd.DataFrame  # row i of every array below belongs to row i of frame (RangeIndex)
    target: str
    features: list[str]  # table: feature columns; images: []
    categorical: list[str]  # table: the subset of `features` that is categorical
    split: np.ndarray  # (N,) str: "train" | "val" | "test"
    fingerprint: str  # sha256 hex over the cleaned content and the split
    log: CleaningLog
    classes: list[str] | None = None  # classification: sorted class names; regression: None
    images: np.ndarray | None = None  # (N, H, W, C) uint8
    source: str = ""  # what the user pointed at (path or sklearn:<name>)

    def indices(self, name: str) -> np.ndarray:
        """Row indices of one split ("train", "val" or "test")."""
        return np.flatnonzero(self.split == name)

    def y(self, name: str | None = None) -> np.ndarray:
        """Targets of a split: class indices (int64) for classification, float64 values for regression."""
        col = self.frame[self.target]
        if name is not None:
            col = col.iloc[self.indices(name)]
        if self.classes is not None:
            lookup = {c: i for i, c in enumerate(self.classes)}
            return col.map(lookup).to_numpy(dtype=np.int64)
        return col.to_numpy(dtype=np.float64)

    def summary(self) -> dict[str, Any]:
        """JSON-able facts about the data set for data.json and the report."""
        out: dict[str, Any] = {
            "source": self.source,
            "kind": self.kind,
            "rows": len(self.frame),
            "target": self.target,
            "features": self.features,
            "categorical": self.categorical,
            "fingerprint": self.fingerprint,
            "splits": {s: int((self.split == s).sum()) for s in SPLITS},
            "cleaning": self.log.to_dict(),
        }
        if self.classes is not None:
            counts = self.frame[self.target].value_counts()
            out["classes"] = self.classes
            out["class_counts"] = {c: int(counts.get(c, 0)) for c in self.classes}
        if self.images is not None:
            out["image_shape"] = list(self.images.shape[1:])
        return out
