"""`load_dataset`: from `data:` in shipml.yaml to a cleaned, split, fingerprinted `Dataset`.

This module only decides which source the path is and in what order the cleaning steps run; the
steps themselves live in sources/images/archives/clean/split.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from shipml.config import ArchiveConfig, DataConfig
from shipml.data import clean
from shipml.data.archives import is_archive, unpack_archive
from shipml.data.dataset import CleaningLog, Dataset
from shipml.data.decode import conform_pixels, load_pixels, pixel_keys
from shipml.data.images import IMAGE_SUFFIXES, discover_images, has_images
from shipml.data.mail_folder import has_label_folders
from shipml.data.sources import read_table, sklearn_digits_images, sklearn_name, sklearn_table, table_format
from shipml.data.split import assign_split, fingerprint, leakage_mask, split_from_column
from shipml.data.text import email_rows, table_text_rows
from shipml.errors import DataError, ShipmlWarning

__all__ = ["load_dataset", "read_table_logged", "resolve_source"]

Kind = Literal["table", "images", "text"]
Found = Literal["table", "images", "emails"]  # what the path holds
TaskKind = Literal["classification", "regression", "generation"]
_WHAT = {"table": "rows", "images": "images", "text": "texts"}  # how log lines name the rows


def load_dataset(cfg: DataConfig, *, seed: int, task_kind: TaskKind, kind: Kind | None = None) -> Dataset:
    """Read, clean, split and fingerprint the data set described by `cfg`.

    `kind` is what the task needs ("images" for image classification, "text" for text tasks, "table"
    otherwise); None lets the data decide (a folder or archive of images is images, anything else a
    table). Text comes from a table's `data.text_column` or from a folder of raw emails.
    """
    log = CleaningLog()
    if task_kind == "generation":  # a generator learns labelled images: classes are read, checked and stratified
        task_kind = "classification"
    if cfg.format == "images" and kind in ("table", "text"):
        raise DataError(f"data.format is images, but this task reads {kind}; use an image task")
    if cfg.format == "emails" and kind in ("table", "images"):
        raise DataError(
            f"data.format is emails, but this task reads {kind}; use a text task (task.name: text-classification)"
        )
    if cfg.path.startswith("sklearn:"):
        if kind == "text":
            raise DataError(
                f"{cfg.path} is a bundled table of numbers, not text; point data.path at a CSV/JSONL/Parquet "
                "file with a text column, or at a folder of emails (root/<label>/<message files>)"
            )
        name = sklearn_name(cfg.path)
        if kind == "images" or cfg.format == "images":
            if name != "digits":
                raise DataError(f"sklearn:{name} is a table, not images; only sklearn:digits has images")
            return _from_digits_images(cfg, seed, task_kind, log)
        return _from_table(sklearn_table(name, cfg.target), cfg, seed, task_kind, log)
    root, found = resolve_source(cfg.path, cfg.format, kind, log, cfg.archive)
    if found == "images":
        return _from_images(root, cfg, seed, task_kind, log)
    if found == "emails":
        rows = email_rows(root, cfg, task_kind, log)
        return _finish(rows, "text", [cfg.text_column], [], cfg, seed, task_kind, log)
    frame = read_table_logged(root, cfg.format, log)
    if kind == "text":
        rows = table_text_rows(frame, cfg, task_kind, log, where=str(root))
        return _finish(rows, "text", [cfg.text_column], [], cfg, seed, task_kind, log)
    return _from_table(frame, cfg, seed, task_kind, log, where=str(root))


def read_table_logged(path: Path, fmt: str, log: CleaningLog) -> pd.DataFrame:
    """`read_table`, with its `ShipmlWarning`s (e.g. duplicate column names) recorded as cleaning-log warnings,
    so the CLI, data.json and the report show them; other warnings pass through unchanged."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ShipmlWarning)
        frame = read_table(path, fmt)
    for w in caught:
        if issubclass(w.category, ShipmlWarning):
            log.warn(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return frame


def resolve_source(
    path_text: str, fmt: str, kind: Kind | None, log: CleaningLog, archive: ArchiveConfig | None = None
) -> tuple[Path, Found]:
    """Where the data really is (unpacking archives into the cache, within `archive`'s limits) and what it
    holds: a table, images, or a folder of emails."""
    path = Path(path_text).expanduser()
    if not path.exists():
        raise DataError(
            f"data.path {path_text!r} does not exist (looked at {path.absolute()}); relative paths are "
            f"taken from the config file's folder or the current directory ({os.getcwd()})"
        )
    if path.is_file() and is_archive(path):
        path, fresh = unpack_archive(path, archive)
        log.action(f"{'unpacked' if fresh else 'reused the unpacked copy of'} {Path(path_text).name} in {path}")
    if path.is_file():
        if kind == "images" or fmt == "images":
            raise DataError(
                f"{path} is a file, but images are read from a folder or an archive of them "
                "(root/<class>/*.png); point data.path at the folder"
            )
        if fmt == "emails":
            raise DataError(
                f"{path} is a file, but emails are read from a folder with one sub-folder per label "
                "(root/<label>/<message files>) or an archive of one; point data.path at the folder"
            )
        return path, "table"
    if fmt == "emails":
        return path, "emails"
    wants_images = kind == "images" or fmt == "images" or (kind is None and fmt == "auto" and has_images(path))
    if wants_images:
        return path, "images"
    tables = _tables(path)
    if fmt == "auto" and kind in ("text", None) and not tables and has_label_folders(path):
        if kind == "text" and has_images(path) and not _has_non_images(path):
            raise DataError(
                f"{path} holds images, and this task reads text; use an image task or point data.path at a "
                "table with a text column or a folder of emails"
            )
        return path, "emails"
    return _single_table(path, tables, kind), "table"


def _tables(folder: Path) -> list[Path]:
    tables = []
    for dirpath, dirnames, files in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__MACOSX"]
        tables += [Path(dirpath) / f for f in files if not f.startswith(".") and table_format(Path(f))]
    return sorted(tables)


def _has_non_images(folder: Path) -> bool:
    for _, dirnames, files in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__MACOSX"]
        if any(not f.startswith(".") and not f.lower().endswith(IMAGE_SUFFIXES) for f in files):
            return True
    return False


def _single_table(folder: Path, tables: list[Path], kind: Kind | None) -> Path:
    if len(tables) == 1:
        return tables[0]
    if not tables and has_images(folder):
        raise DataError(
            f"{folder} holds images but no table, and this task reads a table; use an image task "
            "(e.g. task.name: image-classification) or point data.path at a CSV/JSONL/Parquet file"
        )
    if not tables and kind == "table" and has_label_folders(folder):
        raise DataError(
            f"no CSV, JSONL or Parquet file found in {folder}; it holds label folders of files (raw emails?), "
            "and this task reads a table. For emails use a text task (task.name: text-classification)"
        )
    if not tables:
        raise DataError(
            f"no CSV, JSONL or Parquet file found in {folder}, and no images either (nor label folders of raw "
            "emails); point data.path at a table file, an image folder (root/<class>/*.png) or an email folder "
            "(root/<label>/<message files>)"
        )
    shown = ", ".join(str(t.relative_to(folder)) for t in tables[:10])
    raise DataError(f"{folder} holds several tables ({shown}); point data.path at one of them")


def _from_table(
    frame: pd.DataFrame,
    cfg: DataConfig,
    seed: int,
    task_kind: TaskKind,
    log: CleaningLog,
    where: str | None = None,
) -> Dataset:
    """Tables: target and split column, labels, feature types, missing values; then `_finish`."""
    where = where or cfg.path
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    clean.require_target(frame, cfg.target, where)
    fixed = split_from_column(frame, cfg.split_column, where)
    rows = clean.drop_missing_target(clean.Rows(frame=frame, fixed=fixed), cfg.target, log)
    if task_kind == "classification":
        rows = clean.normalise_labels(rows, cfg.target, log)
    else:
        rows = clean.coerce_regression_target(rows, cfg.target)
    features = clean.select_features(rows.frame, cfg)
    rows, features, categorical = clean.prepare_features(rows, features, cfg, log)
    rows = clean.handle_missing(rows, features, cfg.missing, log)
    rows.frame = rows.frame[[*features, cfg.target]]
    rows.keys = clean.feature_keys(rows.frame, features)
    return _finish(rows, "table", features, categorical, cfg, seed, task_kind, log)


def _from_images(root: Path, cfg: DataConfig, seed: int, task_kind: TaskKind, log: CleaningLog) -> Dataset:
    if task_kind == "regression":
        raise DataError("image folders hold classes (one folder per class); use an image classification task")
    layout = discover_images(root)
    if layout.loose:
        log.warn(f"ignored {layout.loose} images lying outside class folders")
    for rel, reason in layout.unreadable:
        log.skip(rel, reason)
    if layout.unreadable:
        log.warn(f"skipped {len(layout.unreadable)} image entries that cannot be opened (listed under 'skipped')")
    pixels, idx = load_pixels(layout, cfg.image_size, cfg.channels, log)
    frame = pd.DataFrame(
        {"source": [layout.relpaths[i] for i in idx], cfg.target: [layout.labels[i] for i in idx]},
        dtype=object,
    )
    fixed = np.array([layout.splits[i] for i in idx], dtype=object)
    rows = clean.Rows(frame=frame, fixed=fixed, images=pixels, keys=pixel_keys(pixels))
    return _finish(clean.normalise_labels(rows, cfg.target, log), "images", [], [], cfg, seed, task_kind, log)


def _from_digits_images(cfg: DataConfig, seed: int, task_kind: TaskKind, log: CleaningLog) -> Dataset:
    if task_kind == "regression":
        raise DataError("sklearn:digits images are for classification; use an image classification task")
    pixels, labels = sklearn_digits_images()
    pixels = conform_pixels(pixels, cfg.image_size, cfg.channels)
    frame = pd.DataFrame({"source": [f"digits/{i:04d}" for i in range(len(labels))], cfg.target: labels}, dtype=object)
    rows = clean.Rows(frame=frame, fixed=np.full(len(labels), "", dtype=object), images=pixels, keys=pixel_keys(pixels))
    return _finish(rows, "images", [], [], cfg, seed, task_kind, log)


def _class_order(labels: list[str]) -> list[str]:
    """Sorted class names; numerically when they are all integers (so "10" follows "9")."""
    if all(re.fullmatch(r"[+-]?\d+", c) for c in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _finish(
    rows: clean.Rows,
    kind: Kind,
    features: list[str],
    categorical: list[str],
    cfg: DataConfig,
    seed: int,
    task_kind: TaskKind,
    log: CleaningLog,
) -> Dataset:
    """The steps tables, images and texts share: duplicates, class checks, split, leakage, fingerprint."""
    what = _WHAT[kind]
    if cfg.dedupe:
        rows = clean.dedupe(rows, cfg.target, what, log)
    if task_kind == "classification":
        clean.warn_conflicts(rows, cfg.target, what, log)
        rows = clean.check_classes(rows, cfg.target, cfg.min_class_count, log)
        groups = rows.frame[cfg.target].to_numpy(dtype=object)
    else:
        clean.check_regression_target(rows, cfg.target)
        groups = np.zeros(len(rows.frame), dtype=np.int64)
    split = assign_split(groups, rows.fixed, cfg.split, seed, log)
    assert rows.keys is not None
    leaked = leakage_mask(rows.keys, split, what, log)
    rows, split = rows.take(~leaked), split[~leaked]
    counts = {s: int((split == s).sum()) for s in ("train", "val", "test")}
    if not counts["train"] or not counts["test"]:
        raise DataError(
            f"only {len(split)} {what} are left after cleaning "
            f"({counts['train']} train, {counts['test']} test); "
            "training and evaluation need at least one of each: add data"
        )
    frame = rows.frame.reset_index(drop=True)
    classes = None
    if task_kind == "classification":
        classes = _class_order(sorted(set(frame[cfg.target])))
        untrained = sorted(set(classes) - set(frame[cfg.target][split == "train"]))
        if untrained:
            log.warn(f"classes with no training {what}: {', '.join(untrained[:10])}")
    log.action(
        f"split {len(split)} {what}: {counts['train']} train / {counts['val']} val / {counts['test']} test "
        f"(seed {seed}{', stratified by class' if classes else ''})"
    )
    columns = [*features, cfg.target]
    return Dataset(
        kind=kind,
        frame=frame,
        target=cfg.target,
        features=features,
        categorical=categorical,
        split=split,
        fingerprint=fingerprint(frame, columns, split, rows.images),
        log=log,
        classes=classes,
        images=rows.images,
        source=cfg.path,
    )
