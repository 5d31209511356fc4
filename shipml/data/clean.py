"""Cleaning: targets, labels, feature types, missing values, duplicates and class checks.

Each step works on `Rows` (the frame plus whatever is row-aligned with it) and records what it did in
the `CleaningLog`, with counts, so the user can see why 5,000 rows became 4,912. Checks raise a
`DataError` that says what to change (usually a `data.*` field).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from shipml.config import DataConfig
from shipml.core.values import category_text, finite_numbers, map_values, value_text
from shipml.data.dataset import CleaningLog
from shipml.errors import DataError

__all__ = [
    "Rows",
    "category_text",
    "check_classes",
    "check_regression_target",
    "coerce_regression_target",
    "dedupe",
    "drop_missing_target",
    "feature_keys",
    "handle_missing",
    "normalise_labels",
    "prepare_features",
    "require_target",
    "select_features",
    "warn_conflicts",
]

MAX_CLASS_RATIO = 0.5  # more distinct labels than this share of rows (and > MAX_CLASSES): not classification
MAX_CLASSES = 50
_TRAILING_ZEROS = re.compile(r"^([+-]?\d+)\.0*$")


@dataclass
class Rows:
    """The rows being cleaned, with everything that must stay aligned with them."""

    frame: pd.DataFrame  # index = row number in the source (for error messages) until the end
    fixed: np.ndarray  # (N,) object: "train"/"val"/"test" fixed by folders or split_column, else ""
    images: np.ndarray | None = None  # (N, H, W, C) uint8
    keys: np.ndarray | None = None  # (N,) uint64 hash of the features (pixels for images)

    def take(self, keep: np.ndarray) -> Rows:
        """The subset of rows where the boolean mask `keep` is true."""
        return replace(
            self,
            frame=self.frame[keep],
            fixed=self.fixed[keep],
            images=None if self.images is None else self.images[keep],
            keys=None if self.keys is None else self.keys[keep],
        )


def _names(values: list[Any], limit: int = 10) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _rownums(index: pd.Index, limit: int = 5) -> str:
    shown = ", ".join(str(int(i) + 1) for i in index[:limit])
    return shown + (f", ... ({len(index)} in all)" if len(index) > limit else "")


def _label(v: Any) -> str | None:
    text = value_text(v)
    if text is None:
        return None
    text = " ".join(text.split())
    m = _TRAILING_ZEROS.match(text)
    return (m.group(1) if m else text) or None


def require_target(frame: pd.DataFrame, target: str, source: str) -> None:
    """The target column must exist; the error lists the columns there are."""
    if target not in frame.columns:
        raise DataError(
            f"target column {target!r} not found in {source}; available columns: "
            f"{_names([str(c) for c in frame.columns], 30)}. Set data.target to the label column"
        )


def drop_missing_target(rows: Rows, target: str, log: CleaningLog) -> Rows:
    """Rows without a label teach nothing and cannot be scored: drop them."""
    col = rows.frame[target]
    missing = col.isna().to_numpy() | col.map(lambda v: isinstance(v, str) and not v.strip()).to_numpy(bool)
    if missing.any():
        log.action(f"dropped {int(missing.sum())} rows with a missing {target!r}")
        rows = rows.take(~missing)
    if len(rows.frame) == 0:
        raise DataError(f"every row has a missing {target!r}; check data.target")
    return rows


def normalise_labels(rows: Rows, target: str, log: CleaningLog) -> Rows:
    """Classification labels as tidy strings; spellings differing only in case become one class."""
    raw = rows.frame[target]
    labels = pd.Series(map_values(raw, _label), index=raw.index, dtype=object)
    changed = int(
        (raw.map(lambda v: isinstance(v, str)).to_numpy(bool) & (raw.to_numpy(object) != labels.to_numpy())).sum()
    )
    if changed:
        log.action(f"normalised {changed} labels (surrounding or repeated whitespace, '1.0' -> '1')")
    counts = labels.value_counts()
    by_lower: dict[str, list[str]] = {}
    for spelling in counts.index:
        by_lower.setdefault(spelling.lower(), []).append(spelling)
    mapping: dict[str, str] = {}
    for spellings in by_lower.values():
        if len(spellings) > 1:
            best = sorted(spellings, key=lambda s: (-counts[s], s))[0]
            moved = int(sum(counts[s] for s in spellings if s != best))
            mapping.update({s: best for s in spellings if s != best})
            others = [s for s in spellings if s != best]
            log.action(f"merged labels differing only in case: {_names(others)} -> {best!r} ({moved} rows)")
    if mapping:
        labels = labels.map(lambda s: mapping.get(s, s))
    frame = rows.frame.copy()
    frame[target] = labels.astype(object)
    return replace(rows, frame=frame)


def coerce_regression_target(rows: Rows, target: str) -> Rows:
    """A regression target must be numbers; anything else is a data problem the user must fix."""
    col = rows.frame[target]
    values, _ = finite_numbers(col)  # inf and |x| > float32 max are not usable targets either
    bad = np.isnan(values)
    if bad.any():
        examples = _names(list(dict.fromkeys(str(v) for v in col[bad]))[:5])
        raise DataError(
            f"target {target!r} must be finite numbers within float32 range (|x| <= 3.4e38) for a regression "
            f"task, but {int(bad.sum())} rows are not (values {examples} at rows {_rownums(col.index[bad])}, "
            "counting data rows from 1). Fix those values, or use a classification task"
        )
    frame = rows.frame.copy()
    frame[target] = values
    return replace(rows, frame=frame)


def check_regression_target(rows: Rows, target: str) -> None:
    """A constant target leaves nothing to learn."""
    if rows.frame[target].nunique() < 2:
        raise DataError(f"target {target!r} has a single value; there is nothing to predict")


def select_features(frame: pd.DataFrame, cfg: DataConfig) -> list[str]:
    """cfg.features (checked), else every column but the target and the split column."""
    columns = [str(c) for c in frame.columns]
    if cfg.features is None:
        features = [c for c in columns if c not in (cfg.target, cfg.split_column)]
    else:
        unknown = [f for f in cfg.features if f not in columns]
        if unknown:
            raise DataError(
                f"data.features names columns that do not exist: {_names(unknown)}; "
                f"available columns: {_names(columns, 30)}"
            )
        clash = [f for f in cfg.features if f in (cfg.target, cfg.split_column)]
        if clash:
            raise DataError(f"data.features must not include the target or split column: {_names(clash)}")
        features = list(dict.fromkeys(cfg.features))
    if not features:
        raise DataError(f"no feature columns: the table has only {_names(columns)}")
    return features


def _numeric_block(frame: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) float64 of numeric columns with the missing rule of `finite_numbers` applied to all of them at
    once, and the per-column count of values made missing (infinite or overflowing float32)."""
    if not columns:
        return np.empty((len(frame), 0)), np.zeros(0, dtype=np.int64)
    block = frame[columns].to_numpy(dtype=np.float64, na_value=np.nan)  # (N, K)
    values, _ = finite_numbers(pd.Series(block.ravel()))  # one call, one rule, whatever the width
    values = values.reshape(block.shape)
    return values, (np.isnan(values) & ~np.isnan(block)).sum(axis=0)


def prepare_features(
    rows: Rows, features: list[str], cfg: DataConfig, log: CleaningLog
) -> tuple[Rows, list[str], list[str]]:
    """Numeric features as float64, categorical ones as text; returns (rows, features, categorical).

    The new columns are built apart and the frame is assembled once: replacing 20,000 columns one at a
    time splits pandas' blocks on every assignment (quadratic time, the "highly fragmented" warning)."""
    frame = rows.frame
    listed = set(cfg.categorical or [])
    unknown = sorted(listed - set(features))
    if unknown:
        raise DataError(f"data.categorical names columns that are not features: {_names(unknown)}")
    dtypes = frame.dtypes
    categorical: list[str] = []
    numeric: list[str] = []
    for col in features:
        dtype = dtypes[col]
        is_number = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        (numeric if is_number and col not in listed else categorical).append(col)
    values, too_big = _numeric_block(frame, numeric)
    for col, n in zip(numeric, too_big.tolist(), strict=True):
        if n:
            log.action(f"column {col!r}: {n} infinite or float32-overflowing values (|x| > 3.4e38) treated as missing")
    texts: dict[str, pd.Series] = {}
    for col in categorical:
        if cfg.categorical is not None and col not in listed:
            log.action(f"column {col!r} is not numeric; treated as categorical")
        texts[col] = category_text(frame[col])
        distinct = texts[col].nunique()
        if distinct > MAX_CLASSES and distinct > 0.9 * len(frame):
            log.warn(
                f"categorical column {col!r} has {distinct} distinct values in {len(frame)} rows; "
                "an identifier or free text? Leave it out with data.features"
            )
    chosen = set(features)
    rest = [c for c in frame.columns if c not in chosen]
    parts = [frame[rest], pd.DataFrame(values, index=frame.index, columns=numeric)]
    if texts:
        parts.append(pd.DataFrame(texts, index=frame.index))
    frame = pd.concat(parts, axis=1)[list(rows.frame.columns)]  # (N, columns) in the source's order
    all_missing = dict(zip(numeric, np.isnan(values).all(axis=0).tolist(), strict=True))
    all_missing.update({c: bool(t.isna().all()) for c, t in texts.items()})
    empty = [c for c in features if all_missing[c]]
    if empty:
        log.warn(f"dropped feature columns with no values at all: {_names(empty)}")
        features = [c for c in features if c not in empty]
        categorical = [c for c in categorical if c not in empty]
        if not features:
            raise DataError("every feature column is empty")
    return replace(rows, frame=frame), features, categorical


def handle_missing(rows: Rows, features: list[str], missing: str, log: CleaningLog) -> Rows:
    """cfg.missing == "drop": drop incomplete rows; "impute": keep NaN for the task to fill from train."""
    na = rows.frame[features].isna()
    per_col = {c: int(n) for c, n in na.sum().items() if n}
    if not per_col:
        return rows
    incomplete = na.any(axis=1).to_numpy()
    detail = ", ".join(f"{c}: {n}" for c, n in per_col.items())
    if missing == "drop":
        log.action(f"dropped {int(incomplete.sum())} rows with missing feature values ({detail})")
        rows = rows.take(~incomplete)
        if len(rows.frame) == 0:
            raise DataError("every row has a missing feature value; set data.missing: impute")
    else:
        log.action(
            f"{int(incomplete.sum())} rows have missing feature values, to be imputed from the training "
            f"split (missing cells per column: {detail})"
        )
    return rows


def feature_keys(frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    """(N,) uint64 hash of each row's features: equal features, equal key."""
    return pd.util.hash_pandas_object(frame[features], index=False).to_numpy(np.uint64)


_KEEP_FIRST = {"train": 0, "": 0, "val": 1, "test": 2}  # a duplicate pair across splits keeps train


def dedupe(rows: Rows, target: str, what: str, log: CleaningLog) -> Rows:
    """Drop exact duplicates (same features and label); one copy stays, preferring a training copy."""
    assert rows.keys is not None
    order = np.argsort([_KEEP_FIRST[s] for s in rows.fixed], kind="stable")
    pairs = pd.DataFrame({"k": rows.keys[order], "y": rows.frame[target].to_numpy()[order]})
    dup = np.zeros(len(order), dtype=bool)
    dup[order] = pairs.duplicated().to_numpy()
    if dup.any():
        log.action(f"removed {int(dup.sum())} exact duplicate {what} (same content and label)")
        rows = rows.take(~dup)
    return rows


def warn_conflicts(rows: Rows, target: str, what: str, log: CleaningLog) -> None:
    """Identical inputs with different labels are kept, but they cap the accuracy any model can reach."""
    assert rows.keys is not None
    pairs = pd.DataFrame({"k": rows.keys, "y": rows.frame[target].to_numpy()})
    conflicted = int((pairs.groupby("k")["y"].transform("nunique") > 1).sum())
    if conflicted:
        log.warn(f"{conflicted} {what} share identical content with a different label (kept)")


def check_classes(rows: Rows, target: str, min_count: int, log: CleaningLog) -> Rows:
    """At least two classes, not a continuous target in disguise, and no class too small to split."""
    counts = rows.frame[target].value_counts()
    n = len(rows.frame)
    if len(counts) < 2:
        only = counts.index[0] if len(counts) else None
        raise DataError(
            f"every row has the same label {only!r}; a classifier needs at least two classes "
            f"(is data.target {target!r} the right column?)"
        )
    if len(counts) > MAX_CLASSES and len(counts) > MAX_CLASS_RATIO * n:
        raise DataError(
            f"target {target!r} has {len(counts)} distinct values in {n} rows, too many for classification; "
            "if it is a quantity use a regression task (e.g. task.name: tabular-regression), otherwise "
            "check data.target"
        )
    rare = counts[counts < min_count]
    if len(rare):
        log.warn(
            f"dropped {len(rare)} classes with fewer than {min_count} rows (data.min_class_count): "
            + ", ".join(f"{c!r} ({k})" for c, k in list(rare.items())[:10])
            + (f", ... ({len(rare)} in all)" if len(rare) > 10 else "")
        )
        rows = rows.take(~rows.frame[target].isin(rare.index).to_numpy())
        if rows.frame[target].nunique() < 2:
            raise DataError(
                f"fewer than two classes have at least {min_count} rows; add data or lower data.min_class_count"
            )
    return rows
