"""Metrics agree with scikit-learn, intervals behave like intervals, and the bootstrap is fast."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from shipml.evaluate import classification_metrics, expected_calibration_error, metric_direction, regression_metrics

SCALARS = ["accuracy", "macro_f1", "macro_precision", "macro_recall", "log_loss", "roc_auc", "ece"]


def _softmax_data(n: int, n_classes: int, seed: int = 0, signal: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes))
    logits[np.arange(n), y] += signal
    proba = np.exp(logits)
    return y, proba / proba.sum(1, keepdims=True)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_point_estimates_match_sklearn(n_classes: int) -> None:
    y, p = _softmax_data(600, n_classes)
    classes = [f"c{i}" for i in range(n_classes)]
    m = classification_metrics(y, p, classes, n_bootstrap=0)
    pred = p.argmax(1)
    assert m["accuracy"]["value"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["macro_f1"]["value"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["macro_precision"]["value"] == pytest.approx(skm.precision_score(y, pred, average="macro"))
    assert m["macro_recall"]["value"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert m["log_loss"]["value"] == pytest.approx(skm.log_loss(y, p))
    expected_auc = skm.roc_auc_score(y, p[:, 1]) if n_classes == 2 else skm.roc_auc_score(y, p, multi_class="ovr")
    assert m["roc_auc"]["value"] == pytest.approx(expected_auc)
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    f1 = skm.f1_score(y, pred, average=None)
    assert [m["per_class"][c]["f1"] for c in classes] == pytest.approx(f1)
    assert [m["per_class"][c]["support"] for c in classes] == np.bincount(y).tolist()
    assert m["n"] == 600
    assert m["ece"]["ci_low"] is None and m["ece"]["ci_high"] is None
    json.dumps(m, allow_nan=False)  # JSON-able as-is


def test_bootstrap_replicate_matches_sklearn_on_the_same_resample() -> None:
    """The vectorised per-resample formulas equal scikit-learn on the resampled rows (ties included).

    With one resample the interval is [min(value, replicate), max(value, replicate)], and the resample
    is the first row of default_rng(seed).integers(0, n, (1, n)).
    """
    y, p = _softmax_data(300, 3, seed=3)
    p = np.round(p, 1) + 1e-3  # many tied scores for the AUC
    p /= p.sum(1, keepdims=True)
    m = classification_metrics(y, p, ["a", "b", "c"], n_bootstrap=1, seed=7)
    idx = np.random.default_rng(7).integers(0, 300, size=(1, 300))[0]
    yr, pr = y[idx], p[idx]
    expected = {  # accuracy is not here: its interval is Wilson's, not the bootstrap's
        "macro_f1": skm.f1_score(yr, pr.argmax(1), average="macro"),
        "macro_precision": skm.precision_score(yr, pr.argmax(1), average="macro", zero_division=0),
        "log_loss": skm.log_loss(yr, pr, labels=[0, 1, 2]),
        "roc_auc": skm.roc_auc_score(yr, pr, multi_class="ovr"),
        "ece": expected_calibration_error(yr, pr),
    }
    for key, value in expected.items():
        assert value == pytest.approx(m[key]["ci_low"]) or value == pytest.approx(m[key]["ci_high"]), key

    t = np.random.default_rng(0).normal(size=300)
    e = t + np.random.default_rng(1).normal(size=300)
    r = regression_metrics(t, e, n_bootstrap=1, seed=7)
    tr, er = t[idx], e[idx]
    for key, value in {"r2": skm.r2_score(tr, er), "mse": skm.mean_squared_error(tr, er)}.items():
        assert value == pytest.approx(r[key]["ci_low"]) or value == pytest.approx(r[key]["ci_high"]), key


def test_interval_contains_estimate_and_narrows_with_more_data() -> None:
    small = classification_metrics(*_softmax_data(200, 3), ["a", "b", "c"], n_bootstrap=300)
    large = classification_metrics(*_softmax_data(4000, 3), ["a", "b", "c"], n_bootstrap=300)
    for key in SCALARS:
        for m in (small, large):
            assert m[key]["ci_low"] <= m[key]["value"] <= m[key]["ci_high"], key
        width_small = small[key]["ci_high"] - small[key]["ci_low"]
        width_large = large[key]["ci_high"] - large[key]["ci_low"]
        assert width_large < width_small, key


def test_seed_makes_intervals_reproducible() -> None:
    y, p = _softmax_data(500, 3)
    a = classification_metrics(y, p, ["a", "b", "c"], n_bootstrap=200, seed=1)
    b = classification_metrics(y, p, ["a", "b", "c"], n_bootstrap=200, seed=1)
    c = classification_metrics(y, p, ["a", "b", "c"], n_bootstrap=200, seed=2)
    assert a == b
    assert a["accuracy"]["ci_low"] != c["accuracy"]["ci_low"] or a["log_loss"]["ci_low"] != c["log_loss"]["ci_low"]


def test_confidence_level_widens_the_interval() -> None:
    y, p = _softmax_data(500, 2)
    narrow = classification_metrics(y, p, ["a", "b"], n_bootstrap=300, confidence=0.5)["accuracy"]
    wide = classification_metrics(y, p, ["a", "b"], n_bootstrap=300, confidence=0.99)["accuracy"]
    assert wide["ci_high"] - wide["ci_low"] > narrow["ci_high"] - narrow["ci_low"]


def test_auc_omitted_when_a_class_is_absent() -> None:
    y, p = _softmax_data(300, 3)
    y = np.where(y == 2, 0, y)  # class "c" never occurs in y_true
    m = classification_metrics(y, p, ["a", "b", "c"], n_bootstrap=50)
    assert "roc_auc" not in m
    assert m["per_class"]["c"]["support"] == 0
    assert m["macro_f1"]["value"] == pytest.approx(
        skm.f1_score(y, p.argmax(1), labels=[0, 1, 2], average="macro", zero_division=0)
    )


def test_auc_interval_skips_single_class_resamples() -> None:
    y = np.array([0] * 19 + [1])  # most resamples miss the only positive
    p = np.column_stack([np.linspace(0.9, 0.1, 20), np.linspace(0.1, 0.9, 20)])
    m = classification_metrics(y, p, ["neg", "pos"], n_bootstrap=200)
    auc = m["roc_auc"]
    assert auc["value"] == pytest.approx(1.0)
    assert auc["ci_low"] is not None and auc["ci_low"] <= 1.0 <= auc["ci_high"]


def test_ece_small_when_calibrated_and_large_when_overconfident() -> None:
    rng = np.random.default_rng(0)
    n = 20000
    conf = rng.uniform(0.5, 1.0, n)
    y_pred = rng.integers(0, 2, n)
    correct = rng.random(n) < conf  # the label agrees with the top class exactly `conf` of the time
    y = np.where(correct, y_pred, 1 - y_pred)
    proba = np.where(y_pred[:, None] == np.arange(2), conf[:, None], 1 - conf[:, None])
    calibrated = classification_metrics(y, proba, ["a", "b"], n_bootstrap=0)["ece"]["value"]
    assert calibrated < 0.02

    y_over = np.where(rng.random(n) < 0.6, y_pred, 1 - y_pred)  # 60% right at 99% confidence
    proba_over = np.where(y_pred[:, None] == np.arange(2), 0.99, 0.01)
    over = classification_metrics(y_over, proba_over, ["a", "b"], n_bootstrap=0)["ece"]["value"]
    assert over == pytest.approx(0.39, abs=0.02)


def test_ece_by_hand() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.2, 0.8]])
    # bins (k/15, (k+1)/15]: 0.9 -> bin 13, 0.6 -> 8, 0.7 -> 10, 0.8 -> 11; each bin |correct - conf|
    expected = (abs(1 - 0.9) + abs(1 - 0.6) + abs(0 - 0.7) + abs(1 - 0.8)) / 4
    assert expected_calibration_error(y, p) == pytest.approx(expected)


def test_regression_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=400) * 3 + 10
    yp = y + rng.normal(size=400)
    m = regression_metrics(y, yp, n_bootstrap=200)
    assert m["r2"]["value"] == pytest.approx(skm.r2_score(y, yp))
    assert m["mse"]["value"] == pytest.approx(skm.mean_squared_error(y, yp))
    assert m["rmse"]["value"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, yp)))
    assert m["mae"]["value"] == pytest.approx(skm.mean_absolute_error(y, yp))
    assert m["n"] == 400
    for key in ("r2", "mse", "rmse", "mae"):
        assert m[key]["ci_low"] <= m[key]["value"] <= m[key]["ci_high"]
    json.dumps(m, allow_nan=False)


def test_regression_constant_resamples_are_skipped_for_r2() -> None:
    y = np.array([1.0] * 9 + [2.0])
    m = regression_metrics(y, y + 0.1, n_bootstrap=100)
    assert m["r2"]["ci_low"] is not None
    json.dumps(m, allow_nan=False)


def test_bad_inputs_raise() -> None:
    y, p = _softmax_data(10, 3)
    with pytest.raises(ValueError, match="proba must be"):
        classification_metrics(y, p[:, :2], ["a", "b", "c"])
    with pytest.raises(ValueError, match="class indices"):
        classification_metrics(y + 5, p, ["a", "b", "c"])
    with pytest.raises(ValueError, match="differ in length"):
        regression_metrics(np.ones(3), np.ones(4))


def test_metric_direction() -> None:
    assert {m: metric_direction(m) for m in ("loss", "mse", "mae", "rmse", "ece", "log_loss")} == dict.fromkeys(
        ("loss", "mse", "mae", "rmse", "ece", "log_loss"), "min"
    )
    assert metric_direction("accuracy") == metric_direction("r2") == metric_direction("macro_f1") == "max"


def test_bootstrap_does_not_loop_over_scikit_learn(monkeypatch: pytest.MonkeyPatch) -> None:
    """1000 resamples of every classification metric must not call scikit-learn once per resample (that loop
    took ~30 s on 5000 rows; the vectorised resampling ~0.4 s, see bench/). Counted, not timed."""
    calls = {"n": 0}
    for name in ("roc_auc_score", "f1_score", "precision_score", "recall_score", "log_loss", "accuracy_score",
                 "confusion_matrix", "precision_recall_fscore_support"):
        if hasattr(skm, name):
            real = getattr(skm, name)

            def counted(*a: object, _real: object = real, **k: object) -> object:
                calls["n"] += 1
                return _real(*a, **k)  # type: ignore[operator]

            monkeypatch.setattr(skm, name, counted)
    y, p = _softmax_data(500, 10)
    classification_metrics(y, p, [str(i) for i in range(10)], n_bootstrap=10)
    few = calls["n"]
    calls["n"] = 0
    classification_metrics(y, p, [str(i) for i in range(10)], n_bootstrap=1000)
    assert calls["n"] == few  # the same point-estimate calls, whatever the number of resamples


def test_low_precision_probabilities_are_accepted_without_warnings() -> None:
    y, p = _softmax_data(2000, 5)
    p32 = p.astype(np.float32)  # rows sum to 1 +- 1e-7, which scikit-learn's log_loss would warn about
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics(y, p32, list("abcde"), n_bootstrap=20)
    assert m["log_loss"]["value"] == pytest.approx(skm.log_loss(y, p), rel=1e-5)
    bf16 = (p32.view(np.uint32) & 0xFFFF0000).view(np.float32)  # bf16 precision: 8 mantissa bits
    assert np.abs(bf16.sum(1) - 1).max() > 1e-4
    assert "roc_auc" in classification_metrics(y, bf16, list("abcde"), n_bootstrap=0)
    with pytest.raises(ValueError, match="sum to 1"):
        classification_metrics(y, p * 3, list("abcde"))  # scores, not probabilities


def test_decision_labels_replace_the_argmax_for_decision_metrics_only() -> None:
    y, p = _softmax_data(500, 2, seed=3, signal=1.0)
    classes = ["ham", "spam"]
    plain = classification_metrics(y, p, classes, n_bootstrap=200, seed=1)
    strict = (p[:, 1] >= 0.8).astype(np.int64)  # a high threshold: fewer positives than the argmax
    tuned = classification_metrics(y, p, classes, n_bootstrap=200, seed=1, labels=strict)
    assert tuned["accuracy"]["value"] == pytest.approx(skm.accuracy_score(y, strict))
    assert tuned["accuracy"]["value"] != plain["accuracy"]["value"]
    assert tuned["confusion_matrix"] == skm.confusion_matrix(y, strict).tolist()
    assert tuned["per_class"]["spam"]["recall"] == pytest.approx(skm.recall_score(y, strict))
    assert tuned["macro_f1"]["value"] == pytest.approx(skm.f1_score(y, strict, average="macro"))
    for name in ("log_loss", "roc_auc", "ece"):  # judged on the probabilities: untouched, intervals too
        assert tuned[name] == plain[name], name
    # the intervals follow the labels: perfect labels give accuracy 1 with a Wilson interval below 1
    perfect = classification_metrics(y, p, classes, n_bootstrap=200, labels=y.astype(np.int64))
    assert perfect["accuracy"]["value"] == 1.0
    assert perfect["accuracy"]["ci_low"] < 1.0 == perfect["accuracy"]["ci_high"]
    assert perfect["log_loss"]["value"] == plain["log_loss"]["value"]
    # argmax given explicitly changes nothing
    assert classification_metrics(y, p, classes, n_bootstrap=200, seed=1, labels=p.argmax(1)) == plain


@pytest.mark.parametrize(
    ("labels", "match"),
    [(np.array([0, 1]), r"\(4,\)"), (np.array([0.0, 1.0, 0.0, 1.0]), "integer"), (np.array([0, 1, 2, 1]), r"\[0, 2\)")],
)
def test_bad_decision_labels_raise(labels: np.ndarray, match: str) -> None:
    y, p = _softmax_data(4, 2)
    with pytest.raises(ValueError, match=match):
        classification_metrics(y, p, ["a", "b"], n_bootstrap=0, labels=labels)
