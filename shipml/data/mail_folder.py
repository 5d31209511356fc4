"""Folders of raw emails, one sub-folder per label: finding the messages, and their text (cached).

Layouts understood (hidden files and __MACOSX ignored, nesting allowed inside a label folder, one wrapping
top folder allowed, e.g. an archive holding corpus/ham/ + corpus/spam/), as for image folders:

    root/<label>/**/<message files>               the split is drawn
                                                  e.g. root/spam/spam_2/00001.7c53336b37003a9286aba55d2945844c
    root/{train,val,test}/<label>/**/<files>      the split is given (a missing val or test carved from train)

SpamAssassin's `cmds` files (the shell commands that built a part, not a message) are skipped where
the corpus puts them: directly in a label folder or in a part folder just below it.

Parsing is the slow part (about 0.7 ms of CPU a message, 4 s for the 6,046 SpamAssassin messages),
so the texts are cached as parquet under `cache_dir()/text/<key>.parquet` (0.3 s to read back); the
key covers the folder, every file's relative path, size and mtime, and the `EmailConfig`: touching a
message or changing `data.email` parses again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from shipml.config import EmailConfig
from shipml.core.email import MAX_MESSAGE_BYTES, message_text, read_message
from shipml.core.images import is_hidden, list_children
from shipml.data.cache import atomic_write_bytes, cache_subdir
from shipml.data.layout import SPLIT_FOLDERS, FileLayout
from shipml.errors import DataError

__all__ = ["MAX_MESSAGE_BYTES", "MailLayout", "discover_messages", "has_label_folders", "message_texts"]

_CACHE_VERSION = 1  # bump when parsing changes, so stale cache entries are never read
_NOT_MESSAGES = frozenset({"manifest.json", "readme", "readme.md", "readme.txt", "license", "cmds"})


@dataclass
class MailLayout(FileLayout):
    """The message files of a data set (see FileLayout)."""

    loose: list[str] = field(default_factory=list)  # files outside any label folder (ignored)


def has_label_folders(folder: Path) -> bool:
    """True when some visible sub-folder of `folder` (or of its single wrapping folder) holds a file."""
    try:
        return bool(_find_labels(folder)[0])
    except OSError:
        return False


def _find_labels(base: Path) -> tuple[list[Path], list[Path]]:
    """(label folders, loose files at the top), after unwrapping a single wrapping folder."""
    top = base
    while True:
        dirs, files = list_children(top)
        if (
            len(dirs) == 1
            and dirs[0].name.lower() not in SPLIT_FOLDERS  # root/train/<label>/ alone is a split layout
            and list_children(dirs[0])[0]
            and not any(f.name.lower() not in _NOT_MESSAGES for f in files)
        ):
            top = dirs[0]
            continue
        break
    return [d for d in dirs if _any_file(d)], files


def _any_file(folder: Path) -> bool:
    for _, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not is_hidden(d)]
        if any(not is_hidden(f) for f in files):
            return True
    return False


def _walk_label(folder: Path, base: Path, label: str, split: str, out: MailLayout) -> None:
    """Every visible file below a label folder, following folder links but never in a cycle."""
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[Path, int]] = [(folder, 0)]
    while stack:
        current, depth = stack.pop()
        try:
            st = current.stat()
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            entries = list(os.scandir(current))
        except OSError as err:
            out.unreadable.append((current.relative_to(base).as_posix(), f"cannot list folder ({err.strerror or err})"))
            continue
        for entry in entries:
            if is_hidden(entry.name):
                continue
            rel = Path(entry.path).relative_to(base).as_posix()
            try:
                if entry.is_dir():
                    stack.append((Path(entry.path), depth + 1))
                    continue
                if entry.name == "cmds" and depth <= 1:
                    continue
                if not entry.is_file():  # a FIFO would block the read forever; devices, sockets: no mail
                    raise OSError(f"not a regular file ({rel})")
                st = entry.stat()
            except OSError as err:  # e.g. a broken link
                out.unreadable.append((rel, f"unreadable ({err.strerror or err})"))
                continue
            out.add(rel, label, split, (st.st_size, st.st_mtime_ns))


def _loose(files: list[Path], base: Path) -> list[str]:
    return [f.relative_to(base).as_posix() for f in files if f.name.lower() not in _NOT_MESSAGES]


def discover_messages(base: Path) -> MailLayout:
    """Find the label folders (inside split folders, if the top holds train/ and test/ or val/) under `base`
    and list their message files."""
    top_dirs, loose = _find_labels(base)
    layout = MailLayout(base=base)
    layout.loose = _loose(loose, base)
    splits = {d: SPLIT_FOLDERS.get(d.name.lower()) for d in top_dirs}
    named = sorted(d.name for d, s in splits.items() if s)
    if named and not all(splits.values()):
        # a mix is ambiguous: labels named "test" would teach a model to tell the folders apart
        others = sorted(d.name for d, s in splits.items() if not s)
        raise DataError(
            f"{base} mixes split folders ({', '.join(named)}) with other folders ({', '.join(others[:10])}); use "
            "either root/<label>/<messages> or root/{train,val,test}/<label>/<messages>"
        )
    if named:
        if "train" not in splits.values():
            raise DataError(
                f"{base} has split folders {', '.join(named)} but no train/; add train/<label>/ or put the label "
                "folders directly under the root"
            )
        layout.split_folders = True
        for split_dir, split in splits.items():
            label_dirs, in_split = list_children(split_dir)
            layout.loose += _loose(in_split, base)
            for folder in label_dirs:
                _walk_label(folder, base, folder.name, split or "", layout)
    else:
        for folder in top_dirs:
            _walk_label(folder, base, folder.name, "", layout)
    if not layout.relpaths:
        raise DataError(
            f"no messages found under {base}; expected one folder per label holding raw RFC 822 message "
            "files, e.g. root/ham/0001.eml and root/spam/0002.eml, or root/train/ham/0001.eml and "
            "root/test/ham/0002.eml (nested folders inside a label folder are fine)"
        )
    layout.sort()
    return layout


def _cache_key(layout: MailLayout, email: EmailConfig) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([_CACHE_VERSION, str(layout.base.resolve()), email.model_dump(mode="json")]).encode())
    for rel, (size, mtime) in zip(layout.relpaths, layout.stats, strict=True):
        h.update(f"\0{rel}\0{size}\0{mtime}".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _parse_all(layout: MailLayout, email: EmailConfig) -> pd.DataFrame:
    texts: list[str | None] = []
    errors: list[str | None] = []
    for rel in layout.relpaths:
        try:
            raw = read_message(layout.base / rel)
        except OSError as err:
            texts.append(None)
            errors.append(f"unreadable ({err.strerror or err})")
            continue
        texts.append(message_text(raw, headers=email.headers, body=email.body, max_chars=email.max_chars))
        errors.append(None)
    return pd.DataFrame({"text": pd.Series(texts, dtype=object), "error": pd.Series(errors, dtype=object)})


def message_texts(layout: MailLayout, email: EmailConfig) -> tuple[pd.DataFrame, bool]:
    """(frame row-aligned with `layout`: `text` (None if unreadable) and `error`, whether it was cached)."""
    path = cache_subdir("text") / f"{_cache_key(layout, email)}.parquet"
    if path.is_file():
        try:
            frame = pd.read_parquet(path, engine="pyarrow")
            if len(frame) == len(layout) and list(frame.columns) == ["text", "error"]:
                return frame.astype(object).where(frame.notna(), None), True
        except (OSError, ValueError):  # a damaged entry is re-parsed and overwritten
            pass
    frame = _parse_all(layout, email)
    buf = io.BytesIO()
    frame.to_parquet(buf, engine="pyarrow", index=False)
    with contextlib.suppress(OSError):  # a read-only cache costs speed, not correctness
        atomic_write_bytes(path, buf.getvalue())
    return frame, False
