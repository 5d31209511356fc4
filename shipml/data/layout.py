"""What an image folder and an email folder have in common once listed: files per label (and split), in a
stable order, with what could not be listed. `images.py` and `mail_folder.py` each find their own files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SPLIT_FOLDERS", "FileLayout"]

SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


@dataclass
class FileLayout:
    """The data files of a data set, sorted by relative path; nothing decoded or parsed yet."""

    base: Path  # relative paths below are relative to this (the user's folder or the unpacked archive)
    relpaths: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # label folder names, not yet normalised
    splits: list[str] = field(default_factory=list)  # "train"/"val"/"test" from a split folder, else ""
    stats: list[tuple[int, int]] = field(default_factory=list)  # (bytes, mtime ns), for the cache key
    split_folders: bool = False  # root/{train,val,test}/<label>/
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (relpath, reason): e.g. a link loop

    def __len__(self) -> int:
        return len(self.relpaths)

    def add(self, rel: str, label: str, split: str, stat: tuple[int, int]) -> None:
        self.relpaths.append(rel)
        self.labels.append(label)
        self.splits.append(split)
        self.stats.append(stat)

    def sort(self) -> None:
        """Order every row-aligned list by relative path: the same files always give the same rows."""
        order = sorted(range(len(self)), key=self.relpaths.__getitem__)
        self.relpaths = [self.relpaths[i] for i in order]
        self.labels = [self.labels[i] for i in order]
        self.splits = [self.splits[i] for i in order]
        self.stats = [self.stats[i] for i in order]
        self.unreadable.sort()
