"""A classic scikit-learn model fitted on the same split, so the report can say whether deep learning paid.

The baseline sees exactly what the model saw: the "train" split to fit (not "val": the model only uses
val for early stopping, not for fitting) and the "test" split to predict. Its probabilities are aligned
with `Dataset.classes` even when a class is missing from the training rows.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from shipml.data.dataset import Dataset
from shipml.errors import ConfigError

__all__ = ["BASELINES", "BaselineResult", "fit_baseline"]

MAX_IMAGE_FEATURES = 4096  # larger images are block-averaged down to about this many pixels
_HGB_MAX_CATEGORIES = 255  # HistGradientBoosting's limit for native categorical features


@dataclass
class BaselineResult:
    """What a baseline predicted on the test split, and how long it took to fit."""

    name: str  # human-readable, e.g. "logistic regression"
    proba: np.ndarray | None  # classification: (N_test, C) aligned with Dataset.classes
    pred: np.ndarray | None  # regression: (N_test,) predicted values
    fit_seconds: float
    notes: list[str] = field(default_factory=list)  # e.g. convergence or downsampling remarks


# ------------------------------------------------------------------------------------------ features


def _columns(data: Dataset) -> tuple[list[str], list[str]]:
    """(numeric, categorical) feature names as plain str: ColumnTransformer rejects numpy.str_ keys."""
    categorical = [str(c) for c in data.categorical]
    return [str(f) for f in data.features if str(f) not in categorical], categorical


def _table_frame(data: Dataset, rows: np.ndarray) -> pd.DataFrame:
    """Feature columns with clean dtypes: numbers as float (NaN missing), categories as str objects.

    OneHotEncoder/OrdinalEncoder refuse columns mixing str and int, and pandas' string dtypes trip
    SimpleImputer, so categorical values are plain Python strings with np.nan for missing.
    """
    frame = data.frame.iloc[rows]
    numeric, categorical = _columns(data)
    out = {}
    for col in numeric + categorical:
        values = frame[col]
        if col in categorical:
            out[col] = values.astype(str).astype(object).where(values.notna(), np.nan)
        else:
            out[col] = pd.to_numeric(values, errors="coerce").astype(np.float64)
    return pd.DataFrame(out, index=frame.index)


def _block_size(shape: tuple[int, ...]) -> int:
    """Side of the pixel blocks to average so an (H, W, C) image has at most ~MAX_IMAGE_FEATURES values."""
    h, w, c = shape
    return max(1, math.ceil(math.sqrt(h * w * c / MAX_IMAGE_FEATURES)))


def _image_matrix(images: np.ndarray, k: int) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N, features) float32 in [0, 1], averaging k x k pixel blocks."""
    n, h, w, c = images.shape
    if k > 1:
        hh, ww = h // k, w // k
        images = images[:, : hh * k, : ww * k].reshape(n, hh, k, ww, k, c).mean(axis=(2, 4))
    return images.reshape(n, -1).astype(np.float32) / 255.0


def _linear_preprocessor(data: Dataset) -> ColumnTransformer:
    """Impute + scale numbers, impute + one-hot categories: what a linear model needs."""
    numeric, categorical = _columns(data)
    return ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                categorical,
            ),
        ]
    )


def _tree_preprocessor(data: Dataset, train_x: pd.DataFrame) -> tuple[ColumnTransformer, list[bool]]:
    """Ordinal-code categories (trees split on codes natively), NaN stays NaN; also the categorical mask."""
    numeric, categorical = _columns(data)
    native = [c for c in categorical if train_x[c].nunique() < _HGB_MAX_CATEGORIES]
    coded = [c for c in categorical if c not in native]  # too many categories: split on the code

    def encoder() -> OrdinalEncoder:
        return OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan)

    transformer = ColumnTransformer(
        [("cat", encoder(), native), ("coded", encoder(), coded), ("num", "passthrough", numeric)]
    )
    return transformer, [True] * len(native) + [False] * (len(coded) + len(numeric))


# ------------------------------------------------------------------------------------------ builders

Builder = Callable[[Dataset, pd.DataFrame | np.ndarray, int], Pipeline]


def _logistic(data: Dataset, x: pd.DataFrame | np.ndarray, seed: int) -> Pipeline:
    # lbfgs converges on 4000 MNIST digits in ~110 iterations (~1.6 s); 1000 leaves room for harder sets.
    model = LogisticRegression(max_iter=1000, random_state=seed)
    if data.kind == "images":
        return make_pipeline(model)
    return make_pipeline(_linear_preprocessor(data), model)


def _ridge(data: Dataset, x: pd.DataFrame | np.ndarray, seed: int) -> Pipeline:
    model = RidgeCV(alphas=np.logspace(-3, 3, 13))
    if data.kind == "images":
        return make_pipeline(model)
    return make_pipeline(_linear_preprocessor(data), model)


def _boosting(data: Dataset, x: pd.DataFrame | np.ndarray, seed: int) -> Pipeline:
    cls = HistGradientBoostingClassifier if data.classes is not None else HistGradientBoostingRegressor
    if data.kind == "images":
        return make_pipeline(cls(random_state=seed))
    assert isinstance(x, pd.DataFrame)
    transformer, mask = _tree_preprocessor(data, x)
    return make_pipeline(transformer, cls(categorical_features=mask, random_state=seed))


# method -> (name shown in the report, builder) per task kind; "auto" picks the first entry
BASELINES: dict[str, dict[str, tuple[str, Builder]]] = {
    "classification": {
        "logistic": ("logistic regression", _logistic),
        "gradient-boosting": ("gradient boosting", _boosting),
    },
    "regression": {
        "ridge": ("ridge regression", _ridge),
        "gradient-boosting": ("gradient boosting", _boosting),
    },
}


def fit_baseline(data: Dataset, method: str = "auto", *, seed: int = 0) -> BaselineResult:
    """Fit a scikit-learn baseline on the train split and predict the test split.

    method: "auto" (logistic regression / ridge), "logistic", "ridge" or "gradient-boosting";
    a config's "none" means: do not call this.
    """
    kind = "classification" if data.classes is not None else "regression"
    choices = BASELINES[kind]
    if method == "auto":
        method = next(iter(choices))
    if method not in choices:
        valid = ", ".join(["auto", *choices])
        raise ConfigError(f"evaluate.baseline: {method!r} does not fit a {kind} task; choose one of: {valid}")
    name, build = choices[method]

    notes: list[str] = []
    train, test = data.indices("train"), data.indices("test")
    if data.kind == "images":
        assert data.images is not None
        k = _block_size(data.images.shape[1:])
        if k > 1:
            notes.append(f"images averaged over {k}x{k} pixel blocks to keep the baseline fast")
        x_train, x_test = _image_matrix(data.images[train], k), _image_matrix(data.images[test], k)
    else:
        x_train, x_test = _table_frame(data, train), _table_frame(data, test)
    y_train = data.y("train")

    start = time.perf_counter()
    if kind == "classification" and np.unique(y_train).size < 2:
        notes.append("the training split holds a single class; the baseline always predicts it")
        proba = np.zeros((len(test), len(data.classes or [])))
        proba[:, int(y_train[0])] = 1.0
        return BaselineResult(name, proba, None, time.perf_counter() - start, notes)
    model = build(data, x_train, seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x_train, y_train)
    fit_seconds = time.perf_counter() - start
    for w in caught:  # convergence noise becomes a note; anything else is passed on untouched
        if issubclass(w.category, ConvergenceWarning):
            if not any("converge" in note for note in notes):
                notes.append(f"{name} did not fully converge; its scores may be slightly pessimistic")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    if kind == "regression":
        return BaselineResult(name, None, np.asarray(model.predict(x_test), dtype=np.float64), fit_seconds, notes)
    assert data.classes is not None
    seen = model.classes_.astype(np.int64)  # class indices present in the training split
    proba = np.zeros((len(test), len(data.classes)))
    proba[:, seen] = model.predict_proba(x_test)
    present = set(seen.tolist())
    missing = [name for i, name in enumerate(data.classes) if i not in present]
    if missing:
        notes.append(f"classes absent from the training split get probability 0: {', '.join(missing)}")
    return BaselineResult(name, proba, None, fit_seconds, notes)
