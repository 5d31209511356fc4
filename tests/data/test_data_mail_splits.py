"""Email folders with split folders, root/{train,val,test}/<label>/, built from real SpamAssassin messages:
the given split is honoured (a missing val or test carved from train), as for image folders."""

from __future__ import annotations

import tarfile
from collections import Counter
from pathlib import Path

import pytest

from shipml.config import DataConfig
from shipml.data import infer_data, load_dataset
from shipml.data.dataset import Dataset
from shipml.errors import DataError


def _messages(small_data: Path, label: str) -> list[Path]:
    return sorted((small_data / "spamassassin" / label).iterdir())


def _split_folder(root: Path, small_data: Path, splits: dict[str, slice], nested: bool = False) -> Path:
    """root/<split>/<label>/ holding a slice of each label's real messages (spam nested one level deeper)."""
    for split, part in splits.items():
        for label in ("ham", "spam"):
            folder = root / split / label / ("part_2" if nested and label == "spam" else "")
            folder.mkdir(parents=True, exist_ok=True)
            for path in _messages(small_data, label)[part]:
                (folder / path.name).write_bytes(path.read_bytes())
    return root


def _load(path: Path, **data: object) -> Dataset:
    return load_dataset(DataConfig(path=str(path), **data), seed=0, task_kind="classification", kind="text")


def _folder_split(source: str) -> str:
    return source.split("/")[-4 if "part_2" in source else -3]


def test_train_and_test_folders_are_honoured_and_val_is_carved_from_train(tmp_path: Path, small_data: Path) -> None:
    root = _split_folder(tmp_path / "mail", small_data, {"train": slice(0, 20), "test": slice(20, 30)}, nested=True)
    ds = _load(root)
    assert ds.classes == ["ham", "spam"]  # labels are the folders below the split folders, never train/test
    given = [_folder_split(s) for s in ds.frame["source"]]
    for folder, split in zip(given, ds.split, strict=True):
        assert split == "test" if folder == "test" else split in ("train", "val")
    counts = Counter(zip(ds.split.tolist(), ds.frame["label"], strict=True))
    assert counts[("test", "ham")] == counts[("test", "spam")] == 10
    assert counts[("val", "ham")] >= 1 and counts[("val", "spam")] >= 1  # stratified
    assert any("val carved from train" in a for a in ds.log.actions)
    assert any(s.startswith("train/spam/part_2/") for s in ds.frame["source"])


def test_all_three_split_folders_are_kept_exactly(tmp_path: Path, small_data: Path) -> None:
    root = _split_folder(tmp_path / "mail", small_data,
                         {"train": slice(0, 18), "validation": slice(18, 24), "test": slice(24, 30)})
    ds = _load(root)
    expected = {"train": "train", "validation": "val", "test": "test"}
    assert [expected[_folder_split(s)] for s in ds.frame["source"]] == ds.split.tolist()
    assert Counter(ds.split.tolist()) == {"train": 36, "val": 12, "test": 12}


def test_a_lone_train_folder_is_a_split_layout(tmp_path: Path, small_data: Path) -> None:
    root = _split_folder(tmp_path / "mail", small_data, {"train": slice(0, 30)})
    ds = _load(root, format="emails")
    assert ds.classes == ["ham", "spam"]
    assert set(ds.split.tolist()) == {"train", "val", "test"}
    assert any("fixes the train split; val and test carved from train" in a for a in ds.log.actions)


def test_split_folders_inside_a_wrapping_folder_and_an_archive(tmp_path: Path, small_data: Path) -> None:
    root = _split_folder(tmp_path / "src" / "corpus", small_data, {"train": slice(0, 24), "test": slice(24, 30)})
    with tarfile.open(tmp_path / "corpus.tar.gz", "w:gz") as tf:
        tf.add(root, arcname="corpus")
    for path in (tmp_path / "src", tmp_path / "corpus.tar.gz"):
        ds = _load(path)
        assert ds.classes == ["ham", "spam"]
        assert Counter(ds.split.tolist())["test"] == 12


def test_infer_data_reports_the_split_layout(tmp_path: Path, small_data: Path) -> None:
    root = _split_folder(tmp_path / "mail", small_data, {"train": slice(0, 20), "test": slice(20, 30)})
    profile = infer_data(str(root))
    assert (profile.kind, profile.format, profile.task) == ("text", "emails", "text-classification")
    assert profile.split_folders and profile.classes == {"ham": 30, "spam": 30}


def test_split_folders_without_train_are_refused(tmp_path: Path, small_data: Path) -> None:
    root = _split_folder(tmp_path / "mail", small_data, {"val": slice(0, 10), "test": slice(10, 20)})
    with pytest.raises(DataError, match=r"split folders test, val but no train/"):
        _load(root)


def test_split_folders_mixed_with_label_folders_are_refused(tmp_path: Path, small_data: Path) -> None:
    root = _split_folder(tmp_path / "mail", small_data, {"train": slice(0, 10)})
    (root / "spam").mkdir()
    (root / "spam" / "x").write_bytes(_messages(small_data, "spam")[0].read_bytes())
    with pytest.raises(DataError, match=r"mixes split folders \(train\) with other folders \(spam\)"):
        _load(root)
