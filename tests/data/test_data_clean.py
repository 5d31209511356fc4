"""Cleaning of tables: targets, labels, features, missing values, duplicates and leakage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipml.config import DataConfig
from shipml.data import Dataset, category_text, load_dataset
from shipml.errors import DataError


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache per test, so nothing is read from (or left in) ~/.cache/shipml."""
    path = tmp_path / "cache"
    monkeypatch.setenv("SHIPML_CACHE", str(path))
    return path


def table(tmp_path: Path, frame: pd.DataFrame, name: str = "data.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def balanced(n: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=n), "z": rng.normal(size=n), "label": ["a", "b", "c"] * (n // 3)})


def load(path: str, task_kind: str = "classification", **kw: object) -> Dataset:
    return load_dataset(DataConfig(path=path, **kw), seed=0, task_kind=task_kind)  # type: ignore[arg-type]


def test_missing_target_column_lists_the_columns(tmp_path: Path) -> None:
    path = table(tmp_path, balanced().rename(columns={"label": "y_true"}))
    with pytest.raises(DataError) as err:
        load(path)
    msg = str(err.value)
    assert "'label' not found" in msg and "'x', 'z', 'y_true'" in msg and "data.target" in msg
    assert len(load(path, target="y_true").frame) == 30


def test_rows_without_label_are_dropped(tmp_path: Path) -> None:
    frame = balanced()
    frame.loc[[0, 4], "label"] = np.nan
    ds = load(table(tmp_path, frame))
    assert len(ds.frame) == 28 and "dropped 2 rows with a missing 'label'" in ds.log.actions


def test_constant_label_is_an_error(tmp_path: Path) -> None:
    frame = balanced().assign(label="spam")
    with pytest.raises(DataError, match="every row has the same label 'spam'"):
        load(table(tmp_path, frame))


def test_continuous_target_is_not_a_classification(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": np.arange(200.0), "label": np.random.default_rng(0).normal(size=200)})
    with pytest.raises(DataError, match="regression"):
        load(table(tmp_path, frame))
    assert load(table(tmp_path, frame), task_kind="regression").classes is None


def test_small_class_is_dropped_with_a_warning(tmp_path: Path) -> None:
    frame = pd.concat([balanced(), pd.DataFrame({"x": [9.0], "z": [9.0], "label": ["rare"]})], ignore_index=True)
    ds = load(table(tmp_path, frame))
    assert ds.classes == ["a", "b", "c"] and len(ds.frame) == 30
    assert any("'rare' (1)" in w and "min_class_count" in w for w in ds.log.warnings)
    two = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "label": ["a", "a", "a", "b"]})
    with pytest.raises(DataError, match="fewer than two classes have at least 3 rows"):
        load(table(tmp_path, two, "two.csv"))


def test_label_normalisation_merges_spellings(tmp_path: Path) -> None:
    labels = [" Spam", "spam", "SPAM ", "spam", "ham", "ham  ", "Ham", "ham", "eggs   and spam", "eggs and spam"] * 3
    frame = pd.DataFrame({"x": np.arange(len(labels), dtype=float), "label": labels})
    ds = load(table(tmp_path, frame))
    assert ds.classes == ["eggs and spam", "ham", "spam"]
    counts = ds.frame["label"].value_counts()
    assert counts["spam"] == 12 and counts["ham"] == 12 and counts["eggs and spam"] == 6
    assert any("differing only in case" in a and "'spam'" in a for a in ds.log.actions)


def test_float_labels_become_integer_names(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"  # JSONL keeps 1, 1.0 and "1" apart; they are one class
    labels = [1, 1.0, "1", " 1.0 ", 2, 2.0, "2", 2.0] * 2
    path.write_text("".join(f'{{"x": {i}, "label": {json.dumps(v)}}}\n' for i, v in enumerate(labels)))
    ds = load(str(path))
    assert ds.classes == ["1", "2"] and ds.frame["label"].value_counts().to_dict() == {"1": 8, "2": 8}
    assert set(ds.y().tolist()) == {0, 1}


def test_regression_target_must_be_numeric(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": np.arange(6.0), "label": ["1.5", "2", "ten", "4", "oops", "6"]})
    with pytest.raises(DataError, match=r"'ten', 'oops' at rows 3, 5"):
        load(table(tmp_path, frame), task_kind="regression")


def test_feature_selection_and_types(tmp_path: Path) -> None:
    frame = balanced().assign(city=["Oslo", "Rome", None] * 10, zip=[1234, 5678, 1234] * 10, split="train")
    path = table(tmp_path, frame)
    ds = load(path, features=["x", "city", "zip"], categorical=["zip"])
    assert ds.features == ["x", "city", "zip"] and ds.categorical == ["city", "zip"]
    assert list(ds.frame.columns) == ["x", "city", "zip", "label"]
    assert ds.frame["zip"].tolist()[:2] == ["1234", "5678"] and ds.frame["city"].isna().sum() == 10
    with pytest.raises(DataError, match=r"do not exist: 'nope'; available columns: 'x', 'z', 'label'"):
        load(path, features=["x", "nope"])
    with pytest.raises(DataError, match="must not include the target"):
        load(path, features=["x", "label"])


def test_category_text_matches_training_at_prediction_time() -> None:
    values = pd.Series([1.0, 2.5, np.nan, True, "a"], dtype=object)
    assert category_text(values).tolist()[:2] == ["1", "2.5"]
    assert pd.isna(category_text(values)[2]) and category_text(values)[3] == "True"


def test_missing_values_drop_or_impute(tmp_path: Path) -> None:
    frame = balanced()
    frame.loc[[1, 2], "x"] = np.nan
    frame.loc[[2, 3], "z"] = np.nan
    path = table(tmp_path, frame)
    dropped = load(path, missing="drop")
    assert len(dropped.frame) == 27 and not dropped.frame[["x", "z"]].isna().any().any()
    assert any("dropped 3 rows with missing feature values (x: 2, z: 2)" in a for a in dropped.log.actions)
    kept = load(path, missing="impute")
    assert len(kept.frame) == 30 and int(kept.frame["x"].isna().sum()) == 2
    assert any("3 rows have missing feature values" in a and "x: 2, z: 2" in a for a in kept.log.actions)


def test_duplicates_removed_and_conflicts_warned(tmp_path: Path) -> None:
    frame = balanced()
    first, second = frame.iloc[0].to_dict(), frame.iloc[1].to_dict()
    extra = pd.DataFrame([first, first, second | {"label": "c"}])  # 2 exact copies + 1 relabelled copy
    path = table(tmp_path, pd.concat([frame, extra], ignore_index=True))
    ds = load(path)
    assert len(ds.frame) == 31 and "removed 2 exact duplicate rows (same content and label)" in ds.log.actions
    assert any("2 rows share identical content with a different label" in w for w in ds.log.warnings)
    assert len(load(path, dedupe=False).frame) >= 31


def test_leakage_from_a_given_split_is_removed(tmp_path: Path) -> None:
    frame = balanced(60).assign(part=["train"] * 40 + ["val"] * 10 + ["test"] * 10)
    leak = frame.iloc[[0, 1]].assign(part="test")  # training rows repeated in the test split
    path = table(tmp_path, pd.concat([frame, leak], ignore_index=True))
    ds = load(path, split_column="part", dedupe=False)
    assert (ds.split == "test").sum() == 10 and "part" not in ds.frame.columns
    assert any("removed 2 test and 0 val rows identical to a training row (leakage)" in w for w in ds.log.warnings)
    deduped = load(path, split_column="part")  # with dedupe the training copy is the one kept
    assert (deduped.split == "test").sum() == 10 and (deduped.split == "train").sum() == 40
