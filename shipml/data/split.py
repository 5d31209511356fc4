"""Seeded, stratified splits; the leakage check across them; and the data fingerprint.

The split is drawn per class (one group for regression): each class is shuffled with the seed and cut
in the configured proportions, carrying rounding remainders from class to class so the split sizes
match the fractions overall and within one row per class. Any class with at least as many rows as
there are splits gets a row in every split, so a small class is never absent from the test set.
Small classes are cut first, so the big ones absorb the rounding and the totals stay on target.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

from shipml.config import SplitConfig
from shipml.data.dataset import SPLITS, CleaningLog
from shipml.errors import DataError

__all__ = ["assign_split", "fingerprint", "fixed_from_column", "leakage_mask"]

_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def split_from_column(frame: pd.DataFrame, column: str | None, where: str) -> np.ndarray:
    """Per row "train"/"val"/"test" from `data.split_column`, or "" (split to be drawn) without one."""
    if column is None:
        return np.full(len(frame), "", dtype=object)
    if column not in frame.columns:
        raise DataError(
            f"data.split_column {column!r} not found in {where}; available columns: "
            f"{', '.join(map(repr, frame.columns))}"
        )
    return fixed_from_column(frame[column], column)


def fixed_from_column(values: pd.Series, column: str) -> np.ndarray:
    """The split named by `data.split_column`: train/val/test (any case), anything else is an error."""
    text = values.map(lambda v: str(v).strip().lower() if isinstance(v, str) else None)
    mapped = text.map(_ALIASES)
    bad = mapped.isna()
    if bad.any():
        examples = list(dict.fromkeys(repr(v) for v in values[bad]))[:5]
        rows = ", ".join(str(int(i) + 1) for i in values.index[bad][:5])
        raise DataError(
            f"split column {column!r} must hold train, val or test; found {', '.join(examples)} "
            f"(rows {rows}{', ...' if bad.sum() > 5 else ''}). Fix those values or unset data.split_column"
        )
    return mapped.to_numpy(dtype=object)


def _counts(n: int, weights: np.ndarray, carry: np.ndarray) -> np.ndarray:
    """Split n rows by weights, largest remainder first, carrying what rounding owes to later groups."""
    quota = n * weights + carry
    counts = np.floor(quota).clip(min=0).astype(np.int64)
    while counts.sum() < n:
        counts[np.argmax(quota - counts)] += 1
    while counts.sum() > n:
        over = np.where(counts > 0, counts - quota, -np.inf)
        counts[np.argmax(over)] -= 1
    if n >= len(weights):  # a row for every split where there are enough rows
        for j in np.flatnonzero(counts == 0):
            counts[np.argmax(counts)] -= 1
            counts[j] += 1
    carry[:] = quota - counts
    return counts


def assign_split(
    groups: np.ndarray, fixed: np.ndarray, fractions: SplitConfig, seed: int, log: CleaningLog
) -> np.ndarray:
    """(N,) "train"/"val"/"test" for every row.

    `groups` are the stratification groups (class labels, or one constant for regression); `fixed`
    holds splits given by the data ("" = draw). If the data fixes some splits, the missing ones are
    carved out of its training rows in the configured proportions.
    """
    wanted = {s: getattr(fractions, s) for s in SPLITS}
    present = [s for s in SPLITS if (fixed == s).any()]
    if present:
        missing = [s for s in SPLITS if s not in present and wanted[s] > 0]
        draw = (fixed == "train") if missing else np.zeros(len(fixed), dtype=bool)
        names = ["train", *missing]
        if missing:
            log.action(f"the data fixes the {'/'.join(present)} split; {' and '.join(missing)} carved from train")
    else:
        draw = np.ones(len(fixed), dtype=bool)
        names = [s for s in SPLITS if wanted[s] > 0]
    split = fixed.astype(object).copy()
    weights = np.array([wanted[s] for s in names], dtype=np.float64)
    weights /= weights.sum()
    carry = np.zeros(len(names))
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(draw)
    small: list[str] = []
    group_names, sizes = np.unique(groups[candidates], return_counts=True)
    # smallest groups first: rows they are forced to give to every split are paid back by the big ones
    for group in group_names[np.argsort(sizes, kind="stable")]:
        members = rng.permutation(candidates[groups[candidates] == group])
        counts = _counts(len(members), weights, carry)
        if len(members) < len(names):
            small.append(str(group))
        for name, part in zip(names, np.split(members, np.cumsum(counts)[:-1]), strict=True):
            split[part] = name
    if small and len(np.unique(groups)) > 1:
        log.warn(f"classes too small to appear in every split: {', '.join(small[:10])}")
    return split.astype(str)


def leakage_mask(keys: np.ndarray, split: np.ndarray, what: str, log: CleaningLog) -> np.ndarray:
    """Rows of val/test whose content equals a training row's: evaluating on them overstates skill."""
    train_keys = keys[split == "train"]
    leaked = (split != "train") & np.isin(keys, train_keys)
    if leaked.any():
        per = {s: int((leaked & (split == s)).sum()) for s in ("val", "test")}
        log.warn(f"removed {per['test']} test and {per['val']} val {what} identical to a training row (leakage)")
    return leaked


def _update_column(h: hashlib._Hash, name: str, values: pd.Series) -> None:
    h.update(f"\0column\0{name}\0{values.dtype.kind}\0".encode())
    if values.dtype.kind == "f":
        h.update(np.ascontiguousarray(values.to_numpy(), dtype="<f8").data)
    else:
        h.update("\x1f".join("\x00NA" if isinstance(v, float) else str(v) for v in values).encode())


def fingerprint(frame: pd.DataFrame, columns: list[str], split: np.ndarray, images: np.ndarray | None = None) -> str:
    """sha256 over the cleaned content (columns in order, pixels) and the split.

    A hand-rolled canonical encoding (raw float64 bytes, joined text) rather than a file format, so
    the value does not move with pandas or pyarrow versions.
    """
    h = hashlib.sha256(b"shipml-data-v1")
    h.update(json.dumps([len(frame), columns]).encode())
    for col in columns:
        _update_column(h, col, frame[col])
    if images is not None:
        h.update(f"\0images\0{list(images.shape)}\0".encode())
        h.update(np.ascontiguousarray(images, dtype=np.uint8).data)
    h.update(("\0split\0" + "\n".join(split.tolist())).encode())
    return h.hexdigest()
