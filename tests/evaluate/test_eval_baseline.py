"""Baselines fit on train, predict test, align with Dataset.classes and refuse methods that do not fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits

from shipml.data.dataset import CleaningLog, Dataset
from shipml.errors import ConfigError
from shipml.evaluate import classification_metrics, fit_baseline, regression_metrics
from shipml.evaluate.baseline import MAX_IMAGE_FEATURES


def _split(n: int, seed: int = 0) -> np.ndarray:
    draw = np.random.default_rng(seed).random(n)
    return np.where(draw < 0.7, "train", np.where(draw < 0.85, "val", "test"))


def _table(frame: pd.DataFrame, target: str, categorical: list[str], classes: list[str] | None) -> Dataset:
    features = [c for c in frame.columns if c != target]
    return Dataset(
        kind="table",
        frame=frame,
        target=target,
        features=features,
        categorical=categorical,
        split=_split(len(frame)),
        fingerprint="0" * 64,
        log=CleaningLog(),
        classes=classes,
    )


def _accuracy(data: Dataset, proba: np.ndarray) -> float:
    assert data.classes is not None
    return classification_metrics(data.y("test"), proba, data.classes, n_bootstrap=0)["accuracy"]["value"]


@pytest.fixture(scope="module")
def breast_cancer() -> Dataset:
    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.copy()
    frame["label"] = np.where(frame.pop("target") == 1, "benign", "malignant")
    return _table(frame, "label", [], ["benign", "malignant"])


@pytest.mark.parametrize(
    ("method", "name", "floor"),
    [("auto", "logistic regression", 0.95), ("gradient-boosting", "gradient boosting", 0.9)],
)
def test_breast_cancer(breast_cancer: Dataset, method: str, name: str, floor: float) -> None:
    result = fit_baseline(breast_cancer, method, seed=0)
    n_test = len(breast_cancer.indices("test"))
    assert result.name == name
    assert result.pred is None and result.proba is not None
    assert result.proba.shape == (n_test, 2)
    np.testing.assert_allclose(result.proba.sum(1), 1.0)
    assert _accuracy(breast_cancer, result.proba) >= floor
    assert result.fit_seconds > 0


def test_categorical_column_with_missing_values() -> None:
    rng = np.random.default_rng(0)
    n = 600
    color = rng.choice(["red", "green", "blue"], n).astype(object)
    x = rng.normal(size=n)
    label = np.where((color == "red") | (x > 1.0), "yes", "no")
    color[rng.random(n) < 0.1] = None  # missing categories
    x[rng.random(n) < 0.1] = np.nan  # missing numbers
    frame = pd.DataFrame({"color": color, "x": x, "noise": rng.normal(size=n), "label": label})
    data = _table(frame, "label", ["color"], ["no", "yes"])
    test_rows = data.indices("test")
    frame.loc[test_rows[:3], "color"] = "purple"  # a category the baseline never saw
    for method in ("auto", "gradient-boosting"):
        result = fit_baseline(data, method)
        assert result.proba is not None
        assert _accuracy(data, result.proba) > 0.8, method


def test_numeric_category_codes_are_treated_as_categories() -> None:
    """An int-coded categorical column next to strings must not trip the encoders (mixed types)."""
    rng = np.random.default_rng(1)
    n = 300
    code = rng.integers(0, 4, n)
    frame = pd.DataFrame({"code": code, "label": np.where(code == 2, "b", "a")})
    frame["code"] = frame["code"].astype(object)
    frame.loc[:5, "code"] = "two"
    data = _table(frame, "label", ["code"], ["a", "b"])
    result = fit_baseline(data)
    assert result.proba is not None
    assert _accuracy(data, result.proba) > 0.95  # code 2 -> "b" is learnable exactly (a few "two" rows aside)


def test_digit_images() -> None:
    bunch = load_digits()
    images = (bunch.images * (255 / 16)).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    frame = pd.DataFrame({"source": [f"{i}.png" for i in range(len(images))], "label": bunch.target.astype(str)})
    data = Dataset(
        kind="images",
        frame=frame,
        target="label",
        features=[],
        categorical=[],
        split=_split(len(frame)),
        fingerprint="0" * 64,
        log=CleaningLog(),
        classes=[str(i) for i in range(10)],
        images=images,
    )
    result = fit_baseline(data)
    assert result.name == "logistic regression"
    assert result.proba is not None and result.proba.shape == (len(data.indices("test")), 10)
    assert _accuracy(data, result.proba) >= 0.9
    assert result.notes == []


def test_large_images_are_block_averaged() -> None:
    rng = np.random.default_rng(0)
    n = 60
    images = rng.integers(0, 255, size=(n, 96, 96, 3), dtype=np.uint8)
    frame = pd.DataFrame({"source": [f"{i}.png" for i in range(n)], "label": np.array(["a", "b"] * (n // 2))})
    data = Dataset(
        "images", frame, "label", [], [], _split(n), "0" * 64, CleaningLog(), classes=["a", "b"], images=images
    )
    assert MAX_IMAGE_FEATURES < 96 * 96 * 3
    result = fit_baseline(data)
    assert result.proba is not None and result.proba.shape == (len(data.indices("test")), 2)
    assert any("pixel blocks" in note for note in result.notes)


def test_class_missing_from_training_split_gets_zero_probability(breast_cancer: Dataset) -> None:
    frame = breast_cancer.frame.copy()
    split = breast_cancer.split.copy()
    rare = np.flatnonzero(split == "test")[:3]
    frame.loc[rare, "label"] = "rare"  # a class that exists only in the test split
    data = _table(frame, "label", [], ["benign", "malignant", "rare"])
    data.split = split
    result = fit_baseline(data)
    assert result.proba is not None and result.proba.shape[1] == 3
    assert np.all(result.proba[:, 2] == 0)
    np.testing.assert_allclose(result.proba.sum(1), 1.0)
    assert any("rare" in note for note in result.notes)


def test_diabetes_ridge() -> None:
    frame = load_diabetes(as_frame=True).frame
    data = _table(frame, "target", [], None)
    result = fit_baseline(data)
    assert result.name == "ridge regression"
    assert result.proba is None and result.pred is not None
    assert regression_metrics(data.y("test"), result.pred, n_bootstrap=0)["r2"]["value"] > 0.3
    boosted = fit_baseline(data, "gradient-boosting")
    assert boosted.pred is not None and boosted.pred.shape == result.pred.shape


@pytest.mark.parametrize(("classification", "method"), [(False, "logistic"), (True, "ridge"), (True, "svm")])
def test_method_that_does_not_fit_the_task_is_a_config_error(
    breast_cancer: Dataset, classification: bool, method: str
) -> None:
    data = breast_cancer if classification else _table(load_diabetes(as_frame=True).frame, "target", [], None)
    with pytest.raises(ConfigError, match="choose one of: auto, ") as err:
        fit_baseline(data, method)
    assert "gradient-boosting" in str(err.value)
