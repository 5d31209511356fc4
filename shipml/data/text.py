"""Text rows: a table's text column or a folder of emails, made ready for the shared cleaning steps.

Text is kept as the source has it (no lowercasing, no trimming): the task's tokenizer decides what
matters. Only what cannot be learned from is removed: rows whose text is empty or whitespace, and
unreadable files. Duplicates, labels, class checks, the split and leakage are `load._finish`'s, the
same steps as for tables and images, keyed on a hash of the text.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipml.config import DataConfig
from shipml.core.email import decode_bytes, utf8_safe
from shipml.data import clean
from shipml.data.dataset import CleaningLog
from shipml.data.mail_folder import discover_messages, message_texts
from shipml.data.split import split_from_column
from shipml.errors import DataError

__all__ = ["as_text", "email_rows", "table_text_rows"]

MAX_SKIP_EXAMPLES = 20  # empty or unreadable rows listed one by one in the log; the rest only counted


def as_text(value: Any) -> str:
    """One cell as text: missing -> "", bytes decoded, anything else str(); always valid UTF-8."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bytes, bytearray)):
        return decode_bytes(bytes(value))
    return utf8_safe(value if isinstance(value, str) else str(value))


def _check_columns(frame: pd.DataFrame, cfg: DataConfig, where: str) -> None:
    columns = [str(c) for c in frame.columns]
    if cfg.text_column not in columns:
        raise DataError(
            f"text column {cfg.text_column!r} not found in {where}; available columns: "
            f"{', '.join(map(repr, columns[:30]))}{', ...' if len(columns) > 30 else ''}. "
            "Set data.text_column to the column holding the text"
        )
    if cfg.text_column == cfg.target:
        raise DataError(f"data.text_column and data.target are both {cfg.target!r}; they must be different columns")


def _drop_empty(rows: clean.Rows, column: str, name_of: list[str], reason: str, log: CleaningLog) -> clean.Rows:
    """Rows with nothing but whitespace teach nothing: drop them, count them, list the first few."""
    empty = ~rows.frame[column].map(lambda t: bool(t.strip())).to_numpy(dtype=bool)
    if not empty.any():
        return rows
    where = np.flatnonzero(empty)
    for i in where[:MAX_SKIP_EXAMPLES]:
        log.skip(name_of[i], reason)
    log.action(f"dropped {len(where)} rows with empty text ({reason})")
    rows = rows.take(~empty)
    if len(rows.frame) == 0:
        raise DataError(f"every row has an empty {column!r}; check data.text_column (and data.email for emails)")
    return rows


def _labels(rows: clean.Rows, cfg: DataConfig, task_kind: str, log: CleaningLog) -> clean.Rows:
    rows = clean.drop_missing_target(rows, cfg.target, log)
    if task_kind == "classification":
        return clean.normalise_labels(rows, cfg.target, log)
    return clean.coerce_regression_target(rows, cfg.target)


def table_text_rows(frame: pd.DataFrame, cfg: DataConfig, task_kind: str, log: CleaningLog, where: str) -> clean.Rows:
    """Rows of [text column, target] from a table; the split column is honoured as for tables."""
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    clean.require_target(frame, cfg.target, where)
    _check_columns(frame, cfg, where)
    fixed = split_from_column(frame, cfg.split_column, where)
    texts = pd.Series([as_text(v) for v in frame[cfg.text_column].to_numpy(dtype=object)], dtype=object)
    table = pd.DataFrame({cfg.text_column: texts, cfg.target: frame[cfg.target]})
    rows = _labels(clean.Rows(frame=table, fixed=fixed), cfg, task_kind, log)
    names = [f"row {int(i) + 1}" for i in rows.frame.index]
    return _with_keys(_drop_empty(rows, cfg.text_column, names, "empty text", log), cfg)


def email_rows(root: Path, cfg: DataConfig, task_kind: str, log: CleaningLog) -> clean.Rows:
    """Rows of [text, label, source] from a folder of emails (one sub-folder per label, or split folders
    train/val/test each holding them: the split they give is kept)."""
    if task_kind == "regression":
        raise DataError("an email folder holds classes (one folder per label); use a text classification task")
    for name in (cfg.target, "source"):
        if cfg.text_column == name:
            raise DataError(f"data.text_column must not be {name!r} for emails; keep the default 'text'")
    layout = discover_messages(root)
    if layout.loose:
        log.warn(f"ignored {len(layout.loose)} files lying outside label folders (e.g. {layout.loose[0]!r})")
    for rel, reason in layout.unreadable[:MAX_SKIP_EXAMPLES]:
        log.skip(rel, reason)
    parsed, cached = message_texts(layout, cfg.email)
    log.action(
        f"{'read the cached text of' if cached else 'parsed'} {len(layout)} messages in "
        f"{len(set(layout.labels))} label folders"
    )
    errors = parsed["error"].to_numpy(dtype=object)
    bad = np.flatnonzero(pd.notna(errors))
    for i in bad[:MAX_SKIP_EXAMPLES]:
        log.skip(layout.relpaths[i], str(errors[i]))
    if len(bad) or layout.unreadable:
        log.action(f"skipped {len(bad) + len(layout.unreadable)} unreadable files")
    keep = np.flatnonzero(pd.isna(errors))
    texts = parsed["text"].to_numpy(dtype=object)[keep]
    frame = pd.DataFrame(
        {
            cfg.text_column: pd.Series(texts, dtype=object),
            cfg.target: pd.Series([layout.labels[i] for i in keep], dtype=object),
            "source": pd.Series([utf8_safe(layout.relpaths[i]) for i in keep], dtype=object),  # names may be bytes
        }
    )
    if len(frame) == 0:
        raise DataError(f"none of the {len(layout)} message files under {root} could be read")
    fixed = np.array([layout.splits[i] for i in keep], dtype=object)  # "" unless split folders give it
    if layout.split_folders:
        log.action(f"split folders found: {', '.join(s for s in ('train', 'val', 'test') if s in set(fixed))}")
    rows = _labels(clean.Rows(frame=frame, fixed=fixed), cfg, task_kind, log)
    names = rows.frame["source"].tolist()
    reason = "no text after parsing (only markup, images or attachments, or not a message)"
    return _with_keys(_drop_empty(rows, cfg.text_column, names, reason, log), cfg)


def _with_keys(rows: clean.Rows, cfg: DataConfig) -> clean.Rows:
    """Duplicate and leakage checks compare texts: the key is a hash of the text alone."""
    rows.keys = clean.feature_keys(rows.frame, [cfg.text_column])
    return rows
