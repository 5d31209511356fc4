"""A classic scikit-learn model fitted on the same split, so the report can say whether deep learning paid.

The baseline sees exactly what the model saw: the "train" split to fit (not "val": the model only uses
val for early stopping and threshold tuning, not for fitting) and the "test" split to predict. It also
predicts "val", so a caller can tune the baseline's decision threshold exactly as the model's. Its
probabilities are aligned with `Dataset.classes` even when a class is missing from the training rows.

Which methods fit depends on the task kind (classification/regression) and the data kind: tables and
images take the column/pixel models, text takes TF-IDF models. Asking for a method that does not fit
raises ConfigError listing the ones that do (there is deliberately no silent "logistic means TF-IDF
for text": a config says what runs).
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
from threadpoolctl import threadpool_limits

from shipml.data.dataset import Dataset
from shipml.errors import ConfigError
from shipml.evaluate.baseline_text import tfidf_logistic, tfidf_ridge

__all__ = ["BASELINES", "Baseline", "BaselineResult", "fit_baseline"]

MAX_IMAGE_FEATURES = 4096  # larger images are block-averaged down to about this many pixels
_HGB_MAX_CATEGORIES = 255  # HistGradientBoosting's limit for native categorical features
_PARALLEL_FROM_ROWS = 10_000  # smaller training sets fit on one OpenMP thread (see _fit)


@dataclass
class BaselineResult:
    """What a baseline predicted on the test split, and how long it took to fit."""

    name: str  # human-readable, e.g. "logistic regression"
    proba: np.ndarray | None  # classification: (N_test, C) aligned with Dataset.classes
    pred: np.ndarray | None  # regression: (N_test,) predicted values
    fit_seconds: float
    notes: list[str] = field(default_factory=list)  # e.g. convergence or downsampling remarks
    # classification: (N_val, C) on the "val" split, to tune the baseline's threshold like the model's;
    # None for regression and when the data set has no val rows
    val_proba: np.ndarray | None = None


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

Features = pd.DataFrame | np.ndarray | list[str]
Builder = Callable[[Dataset, Features, int], Pipeline]


def _logistic(data: Dataset, x: Features, seed: int) -> Pipeline:
    # lbfgs converges on 4000 MNIST digits in ~110 iterations (~1.6 s); 1000 leaves room for harder sets.
    model = LogisticRegression(max_iter=1000, random_state=seed)
    if data.kind == "images":
        return make_pipeline(model)
    return make_pipeline(_linear_preprocessor(data), model)


def _ridge(data: Dataset, x: Features, seed: int) -> Pipeline:
    model = RidgeCV(alphas=np.logspace(-3, 3, 13))
    if data.kind == "images":
        return make_pipeline(model)
    return make_pipeline(_linear_preprocessor(data), model)


def _boosting(data: Dataset, x: Features, seed: int) -> Pipeline:
    cls = HistGradientBoostingClassifier if data.classes is not None else HistGradientBoostingRegressor
    if data.kind == "images":
        return make_pipeline(cls(random_state=seed))
    assert isinstance(x, pd.DataFrame)
    transformer, mask = _tree_preprocessor(data, x)
    return make_pipeline(transformer, cls(categorical_features=mask, random_state=seed))


@dataclass(frozen=True)
class Baseline:
    """One registered baseline: its name in the report, how to build it, and the data kinds it reads."""

    name: str
    build: Builder
    data_kinds: frozenset[str]


_COLUMNS = frozenset({"table", "images"})
_TEXT = frozenset({"text"})

# task kind -> method -> Baseline; "auto" picks the first entry that reads the data's kind
BASELINES: dict[str, dict[str, Baseline]] = {
    "classification": {
        "logistic": Baseline("logistic regression", _logistic, _COLUMNS),
        "gradient-boosting": Baseline("gradient boosting", _boosting, _COLUMNS),
        "tfidf-logistic": Baseline("TF-IDF + logistic regression", tfidf_logistic, _TEXT),
    },
    "regression": {
        "ridge": Baseline("ridge regression", _ridge, _COLUMNS),
        "gradient-boosting": Baseline("gradient boosting", _boosting, _COLUMNS),
        "tfidf-ridge": Baseline("TF-IDF + ridge regression", tfidf_ridge, _TEXT),
    },
}


def _choose(data: Dataset, method: str) -> tuple[str, Baseline]:
    """Resolve "auto" and check the method fits the task and data kinds; ConfigError lists the valid ones."""
    kind = "classification" if data.classes is not None else "regression"
    fitting = {m: b for m, b in BASELINES[kind].items() if data.kind in b.data_kinds}
    if method == "auto" and fitting:
        method = next(iter(fitting))
    if method not in fitting:
        valid = ", ".join(["auto", *fitting]) if fitting else "none (no baseline reads this data)"
        raise ConfigError(
            f"evaluate.baseline: {method!r} does not fit a {kind} task on {data.kind} data; choose one of: {valid}"
        )
    return method, fitting[method]


def _inputs(data: Dataset, rows: np.ndarray, notes: list[str]) -> Features:
    """What the builders read for `rows`: a clean feature frame, a pixel matrix, or a list of texts."""
    if data.kind == "images":
        assert data.images is not None
        k = _block_size(data.images.shape[1:])
        note = f"images averaged over {k}x{k} pixel blocks to keep the baseline fast"
        if k > 1 and note not in notes:
            notes.append(note)
        return _image_matrix(data.images[rows], k)
    if data.kind == "text":
        column = data.frame[str(data.features[0])].iloc[rows]
        return column.fillna("").astype(str).tolist()
    return _table_frame(data, rows)


def _fit(model: Pipeline, x: Features, y: np.ndarray, name: str, notes: list[str]) -> float:
    """Fit and return the seconds it took; convergence noise becomes a note, other warnings pass on."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x, y)
    seconds = time.perf_counter() - start
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            if not any("converge" in note for note in notes):
                notes.append(f"{name} did not fully converge; its scores may be slightly pessimistic")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return seconds


def _aligned_proba(model: Pipeline, x: Features, n_rows: int, n_classes: int) -> np.ndarray:
    """(n_rows, n_classes) probabilities with columns of classes absent from training left at 0."""
    proba = np.zeros((n_rows, n_classes))
    if n_rows:
        proba[:, model.classes_.astype(np.int64)] = model.predict_proba(x)
    return proba


def fit_baseline(data: Dataset, method: str = "auto", *, seed: int = 0) -> BaselineResult:
    """Fit a scikit-learn baseline on the train split and predict the test (and val) split.

    method: "auto" or a key of BASELINES[task kind] that reads the data's kind — tables and images:
    "logistic"/"ridge" (auto) or "gradient-boosting"; text: "tfidf-logistic"/"tfidf-ridge" (auto).
    A config's "none" means: do not call this.
    """
    method, baseline = _choose(data, method)
    name = baseline.name
    notes: list[str] = []
    train, val, test = data.indices("train"), data.indices("val"), data.indices("test")
    x_train, x_test = _inputs(data, train, notes), _inputs(data, test, notes)
    y_train = data.y("train")

    if data.classes is not None and np.unique(y_train).size < 2:
        notes.append("the training split holds a single class; the baseline always predicts it")

        def constant(n: int) -> np.ndarray:
            proba = np.zeros((n, len(data.classes or [])))
            proba[:, int(y_train[0])] = 1.0
            return proba

        return BaselineResult(name, constant(len(test)), None, 0.0, notes, constant(len(val)) if len(val) else None)
    # Small sets fit and predict on one OpenMP thread: gradient boosting's per-tree thread barriers
    # spin, so on a 2-core box shared with anything else (another run, the tests, torch's own OpenMP
    # pool) breast cancer took 0.19 s on one thread but 0.9 s to 41 s on two. Large sets keep them all.
    threads = 1 if len(train) < _PARALLEL_FROM_ROWS else None
    with threadpool_limits(limits=threads, user_api="openmp"):
        model = baseline.build(data, x_train, seed)
        fit_seconds = _fit(model, x_train, y_train, name, notes)
        if data.classes is None:
            return BaselineResult(name, None, np.asarray(model.predict(x_test), dtype=np.float64), fit_seconds, notes)
        n_classes = len(data.classes)
        proba = _aligned_proba(model, x_test, len(test), n_classes)
        val_proba = _aligned_proba(model, _inputs(data, val, notes), len(val), n_classes) if len(val) else None
    present = set(model.classes_.astype(np.int64).tolist())
    missing = [c for i, c in enumerate(data.classes) if i not in present]
    if missing:
        notes.append(f"classes absent from the training split get probability 0: {', '.join(missing)}")
    return BaselineResult(name, proba, None, fit_seconds, notes, val_proba)
