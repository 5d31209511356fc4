"""Honest intervals (issue 8): Wilson for proportions, the method recorded, and the report saying which."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
from test_eval_report import Page, make_image_run  # the shared run builder and page parser

from shipml.core.proportion import proportion_interval, wilson_interval
from shipml.evaluate import classification_metrics, regression_metrics, write_report
from shipml.evaluate.report_intervals import with_ci

BOOTSTRAPPED = ["macro_f1", "macro_precision", "macro_recall", "log_loss", "roc_auc", "ece"]


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [  # textbook 95% Wilson score intervals (e.g. Newcombe 1998; Agresti & Coull 1998)
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (50, 100, 0.4038, 0.5962),
        (1, 10, 0.0179, 0.4042),
        (500, 500, 0.9924, 1.0),
    ],
)
def test_wilson_matches_textbook_values(k: int, n: int, low: float, high: float) -> None:
    assert wilson_interval(k, n, 0.95) == pytest.approx((low, high), abs=5e-5)


@pytest.mark.parametrize(("k", "n"), [(0, 1), (3, 7), (17, 40), (999, 1000), (1, 2)])
@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_wilson_ends_are_where_the_score_test_is_exactly_significant(k: int, n: int, confidence: float) -> None:
    """By definition, each inner end p solves (k/n - p)^2 = z^2 p (1 - p) / n: checked from the other side."""
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    low, high = wilson_interval(k, n, confidence)
    for p in (low, high):
        if p in (0.0, 1.0):  # only the closed ends at k = 0 / k = n sit on the boundary
            assert p == (0.0 if k == 0 else 1.0)
            continue
        assert (k / n - p) ** 2 == pytest.approx(z * z * p * (1 - p) / n, rel=1e-9)
    assert 0 <= low < k / n < high <= 1 or k in (0, n)


def test_wilson_edge_cases() -> None:
    assert wilson_interval(0, 0, 0.95) is None  # no trials: no interval rather than a made-up one
    assert proportion_interval(0, 0, 0.95) == {"ci_low": None, "ci_high": None, "ci_method": None, "k": 0, "n": 0}
    wide, narrow = wilson_interval(30, 40, 0.99), wilson_interval(30, 40, 0.8)
    assert wide[0] < narrow[0] and wide[1] > narrow[1]
    for k, n, confidence in [(5, 3, 0.95), (-1, 3, 0.95), (1, 3, 1.0), (1, 3, 0.0)]:
        with pytest.raises(ValueError):
            wilson_interval(k, n, confidence)


@pytest.mark.parametrize("n_bootstrap", [0, 200])
def test_perfect_accuracy_gets_a_real_interval(n_bootstrap: int) -> None:
    """500 of 500 right: "1 [1, 1]" was the bug; the interval must contain 1 and have width."""
    y = np.arange(500) % 3
    proba = np.full((500, 3), 0.1)
    proba[np.arange(500), y] = 0.8
    acc = classification_metrics(y, proba, ["a", "b", "c"], n_bootstrap=n_bootstrap)["accuracy"]
    assert acc["value"] == 1.0
    assert acc["ci_method"] == "wilson" and (acc["k"], acc["n"]) == (500, 500)
    assert acc["ci_low"] == pytest.approx(0.99238, abs=1e-5) and acc["ci_high"] == 1.0
    assert acc["ci_high"] - acc["ci_low"] > 0


def test_precision_and_recall_use_their_own_n() -> None:
    """Recall's n is the class's rows, precision's n the rows predicted as it; never the whole test set."""
    y = np.array([1] * 10 + [0] * 100)
    pred = np.array([1] * 8 + [0] * 2 + [1] * 5 + [0] * 95)  # 8 of 10 positives caught, 5 false alarms
    proba = np.column_stack([1.0 - pred * 0.9, pred * 0.9 + 0.05])
    proba /= proba.sum(1, keepdims=True)
    spam = classification_metrics(y, proba, ["ham", "spam"], n_bootstrap=0, labels=pred)["per_class"]["spam"]
    assert spam["recall"] == pytest.approx(0.8) and spam["precision"] == pytest.approx(8 / 13)
    assert (spam["recall_ci"]["k"], spam["recall_ci"]["n"]) == (8, 10)
    assert (spam["recall_ci"]["ci_low"], spam["recall_ci"]["ci_high"]) == wilson_interval(8, 10, 0.95)
    assert (spam["precision_ci"]["k"], spam["precision_ci"]["n"]) == (8, 13)
    assert (spam["precision_ci"]["ci_low"], spam["precision_ci"]["ci_high"]) == wilson_interval(8, 13, 0.95)
    assert spam["recall_ci"]["ci_method"] == spam["precision_ci"]["ci_method"] == "wilson"


def test_a_class_never_predicted_has_no_precision_interval() -> None:
    y = np.array([0, 1, 2, 2, 1, 0, 2, 1])
    pred = np.where(y == 2, 1, y)  # class "c" is never predicted: precision has n = 0
    proba = np.eye(3)[pred] * 0.8 + 0.2 / 3
    c = classification_metrics(y, proba, ["a", "b", "c"], n_bootstrap=0, labels=pred)["per_class"]["c"]
    assert c["precision_ci"]["ci_low"] is None and c["precision_ci"]["ci_method"] is None
    assert c["precision_ci"]["n"] == 0
    assert (c["recall_ci"]["ci_low"], c["recall_ci"]["ci_high"]) == wilson_interval(0, 3, 0.95)


def test_each_metric_records_its_interval_method() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    proba = np.clip(np.eye(2)[y] * 0.6 + rng.uniform(0, 0.4, (300, 2)), 0, None)
    proba /= proba.sum(1, keepdims=True)
    m = classification_metrics(y, proba, ["a", "b"], n_bootstrap=100)
    assert m["accuracy"]["ci_method"] == "wilson"
    assert {key: m[key]["ci_method"] for key in BOOTSTRAPPED} == dict.fromkeys(BOOTSTRAPPED, "bootstrap")
    r = regression_metrics(y + rng.normal(size=300), y + rng.normal(size=300), n_bootstrap=100)
    assert {key: r[key]["ci_method"] for key in ("r2", "mse", "rmse", "mae")} == dict.fromkeys(
        ("r2", "mse", "rmse", "mae"), "bootstrap"
    )
    off = classification_metrics(y, proba, ["a", "b"], n_bootstrap=0)  # resampling off: Wilson stays
    assert off["accuracy"]["ci_method"] == "wilson" and off["accuracy"]["ci_low"] is not None
    assert all(off[key]["ci_method"] is None and off[key]["ci_low"] is None for key in BOOTSTRAPPED)
    json.dumps(m, allow_nan=False)


def test_rounding_never_prints_a_proportion_as_certain() -> None:
    ci = proportion_interval(100_000, 100_000, 0.95)  # [0.99996, 1]: 4 significant digits would say [1, 1]
    text = with_ci(1.0, ci)
    assert "[1, 1]" not in text and text.startswith("1 [0.99996")
    assert with_ci(0.5, {"ci_low": 0.5, "ci_high": 0.5, "ci_method": "bootstrap"}) == "0.5 (no spread)"
    assert with_ci(0.5, {"ci_low": 0.4, "ci_high": 0.6}) == "0.5 [0.4, 0.6]"  # a pre-"ci_method" run's interval
    assert with_ci(0.5, None) == "0.5"


def _rows(html: str, section: str) -> dict[str, list[str]]:
    """Table rows of a section, keyed by their first cell (cells as text)."""
    body = html.split(f'<section id="{section}">')[1].split("</section>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
    cells = [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, flags=re.S) for row in rows]
    return {c[0]: c[1:] for c in cells if c}


def test_report_names_the_interval_method_and_never_prints_a_zero_width_ci(tmp_path: Path) -> None:
    """A perfect model on 40 test rows: accuracy gets Wilson [0.9124, 1]; macro F1's bootstrap shows no spread."""
    run = make_image_run(tmp_path / "perfect", model_signal=60.0)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"]["value"] == 1.0
    html = write_report(run).read_text(encoding="utf-8")
    page = Page(html)
    comparison = _rows(html, "comparison")
    assert comparison["metric"][-1] == "interval"
    n = metrics["test"]["n"]
    low = wilson_interval(n, n, 0.95)[0]
    assert comparison["accuracy"][0] == f"1 [{low:.4g}, 1]" and comparison["accuracy"][-1] == "Wilson"
    assert comparison["macro F1"][0] == "1 (no spread)" and comparison["macro F1"][-1] == "bootstrap"
    assert comparison["macro F1"][3] == "–"  # a point cannot show that intervals do not overlap
    assert comparison["accuracy"][3] == "no"  # Wilson vs the weak baseline's Wilson
    assert "[1, 1]" not in page.text["comparison"] and "[1, 1]" not in page.text["results"]
    assert "95% confidence intervals: Wilson score interval for proportions (accuracy)" in page.text["comparison"]
    assert "percentile bootstrap over the test rows, 1,000 resamples for the other figures" in page.text["comparison"]
    assert "“no spread”: every bootstrap resample gave the same value" in page.text["comparison"]
    # per class: precision and recall with their Wilson intervals, each over its own n
    results = _rows(html, "results")
    name = "one"
    entry = metrics["test"]["per_class"][name]
    support = entry["support"]
    assert results[name][1] == f"1 [{wilson_interval(support, support, 0.95)[0]:.4g}, 1]"
    assert "Wilson score interval for proportions (a class's precision" in page.text["results"]


def test_frontier_interval_names_its_method(tmp_path: Path) -> None:
    run = make_image_run(tmp_path / "compressed")
    accuracy = json.loads((run / "metrics.json").read_text())["test"]["accuracy"]
    row = {
        "name": "fp32",
        "accuracy": accuracy["value"],
        "ci_low": accuracy["ci_low"],
        "ci_high": accuracy["ci_high"],
        "p50_ms": 1.0,
        "p99_ms": 2.0,
        "rows_per_s": 900.0,
        "batch_size": 32,
        "package_mb": 1.5,
        "peak_mb": 80.0,
    }
    frontier = {"headline": "accuracy", "rows": [row], "selected": "fp32", "measured": {}}
    (run / "frontier.json").write_text(json.dumps(frontier))
    page = Page(write_report(run).read_text(encoding="utf-8"))
    assert "Wilson score interval for proportions (accuracy)" in page.text["frontier"]
    assert f"[{accuracy['ci_low']:.4g}, {accuracy['ci_high']:.4g}]" in page.text["frontier"]
    assert not math.isclose(accuracy["ci_low"], accuracy["ci_high"])
