"""The report of a binary text task: decision table, precision–recall curve, both mistake lists, escaping."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_eval_report import EVIL, Page  # the shared page parser of the report tests

from shipml.core.proportion import wilson_interval
from shipml.data.dataset import CleaningLog, Dataset
from shipml.evaluate import binary_rates, classification_metrics, tune_threshold, write_report
from shipml.evaluate.report_text import SNIPPET_CHARS

CLASSES = ["ham", "spam"]
LONG = "Dear friend,\n\n" + "Claim   your prize now! " * 40 + "\nUnsubscribe <a href='x'>here</a>."


def _proba(y: np.ndarray, signal: float, seed: int) -> np.ndarray:
    """(N, 2) probabilities in float32 (as a softmax writes them), informative by `signal`."""
    logits = np.random.default_rng(seed).normal(size=(len(y), 2))
    logits[np.arange(len(y)), y] += signal
    e = np.exp(logits)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def _decision(y_val: np.ndarray, p_val: np.ndarray, y_test: np.ndarray, p_test: np.ndarray) -> dict[str, Any]:
    t = tune_threshold(y_val, p_val[:, 1], "max_fpr", max_fpr=0.01)
    return {
        "strategy": "max_fpr",
        "positive": "spam",
        "threshold": t,
        "max_fpr": 0.01,
        "val": binary_rates(y_val, p_val[:, 1], t),
        "test": binary_rates(y_test, p_test[:, 1], t),
    }


def make_text_run(run_dir: Path, *, new_keys: bool = True) -> Path:
    """A finished spam-filter run; new_keys=False writes what a run from before decisions looked like."""
    run_dir.mkdir(parents=True, exist_ok=True)
    n = 240
    labels = np.where(np.arange(n) % 3 == 0, "spam", "ham")
    texts = [
        f"Message {i} about {'offers and prizes' if lab == 'spam' else 'the meeting'}" for i, lab in enumerate(labels)
    ]
    split = np.array(["train", "val", "test", "test"])[np.arange(n) % 4]
    data = Dataset(
        "text",
        pd.DataFrame({"text": texts, "label": labels}),
        "label",
        ["text"],
        [],
        split,
        "cd" * 32,
        CleaningLog(),
        classes=CLASSES,
        source="spamassassin/",
    )
    test = data.indices("test")
    y_test, y_val = data.y("test"), data.y("val")
    p_test, p_val = _proba(y_test, 2.0, 1), _proba(y_val, 2.0, 2)
    b_test, b_val = _proba(y_test, 1.0, 3), _proba(y_val, 1.0, 4)
    model, base = _decision(y_val, p_val, y_test, p_test), _decision(y_val, b_val, y_test, b_test)
    pred = (p_test[:, 1] >= model["threshold"]).astype(np.int64) if new_keys else p_test.argmax(1)
    b_pred = (b_test[:, 1] >= base["threshold"]).astype(np.int64)
    metrics: dict[str, Any] = {
        "test": classification_metrics(y_test, p_test, CLASSES, n_bootstrap=100, labels=pred),
        "baseline": {
            "name": "TF-IDF + logistic regression",
            "fit_seconds": 3.2,
            "test": classification_metrics(y_test, b_test, CLASSES, n_bootstrap=100, labels=b_pred),
        },
    }
    frame = {
        "row": test,
        "y_true": [CLASSES[i] for i in y_test],
        "y_pred": [CLASSES[i] for i in pred],
        "confidence": p_test[np.arange(len(test)), pred],
        "proba:ham": p_test[:, 0],
        "proba:spam": p_test[:, 1],
    }
    if new_keys:
        metrics["decision"], metrics["baseline"]["decision"] = model, base
        frame |= {
            "baseline:y_pred": [CLASSES[i] for i in b_pred],
            "baseline:proba:ham": b_test[:, 0],
            "baseline:proba:spam": b_test[:, 1],
        }
    df = pd.DataFrame(frame)
    model_wrong = np.flatnonzero(df["y_pred"] != df["y_true"])
    df["text"] = [texts[r] for r in test]
    top = df.index[model_wrong][np.argmax(df["confidence"].to_numpy()[model_wrong])]
    df.loc[top, "text"] = f"{EVIL} {LONG}"  # the model's most confident mistake carries HTML
    df["source"] = [f"spam/{r:05d}.<b>msg</b>" for r in test]
    df.to_parquet(run_dir / "predictions.parquet")
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "data.json").write_text(json.dumps(data.summary()))
    run = {"id": "spam-1", "name": "spam", "task": "text-classification", "task_kind": "classification"}
    (run_dir / "run.json").write_text(json.dumps(run))
    (run_dir / "config.yaml").write_text("name: spam\nevaluate:\n  misclassified: 4\n")
    return run_dir


def _section(html: str, anchor: str) -> str:
    return html.split(f'<section id="{anchor}">')[1].split("</section>")[0]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Page]:
    run = make_text_run(tmp_path_factory.mktemp("runs") / "spam")
    html = write_report(run).read_text(encoding="utf-8")
    return run, html, Page(html)


def test_decision_table(text_run: tuple[Path, str, Page]) -> None:
    run, html, page = text_run
    metrics = json.loads((run / "metrics.json").read_text())
    results = page.text["results"]
    assert "Decision threshold" in results and "Positive class: spam" in results
    assert results.count("max_fpr (FPR ≤ 0.01)") == 4  # model and baseline, val and test
    assert f"{metrics['decision']['threshold']:.6g}" in results
    assert f"{metrics['baseline']['decision']['threshold']:.6g}" in results
    assert "baseline (TF-IDF + logistic regression)" in results
    table = _section(html, "results").split("<h3>Decision threshold</h3>")[1]
    row = table.split("<tr><td>model</td><td>test</td>")[1].split("</tr>")[0]
    r = metrics["decision"]["test"]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row)[2:]  # after strategy and threshold

    def wilson(value: float, k: int, n: int) -> str:  # the proportions carry their 95% Wilson interval
        low, high = wilson_interval(k, n, 0.95)
        return f"{value:.4g} [{low:.4g}, {high:.4g}]"

    precision = wilson(r["precision"], r["tp"], r["tp"] + r["fp"])
    recall = wilson(r["recall"], r["tp"], r["tp"] + r["fn"])
    fpr = wilson(r["fpr"], r["fp"], r["fp"] + r["tn"])
    assert cells == [precision, recall, f"{r['f1']:.4g}", fpr, str(r["fp"]), str(r["fn"])]
    assert "Wilson score interval for proportions (precision, recall and FPR" in results


def test_pr_curve_with_operating_points(text_run: tuple[Path, str, Page]) -> None:
    _, html, _ = text_run
    results = _section(html, "results")
    svg = results.split("<h3>Decision threshold</h3>")[1]
    assert "<svg" in svg and "precision–recall on test (positive: spam)" in svg
    assert re.search(r"model at threshold 0\.\d+", svg) and "baseline (TF-IDF + logistic regression) at" in svg
    assert "AP 0." in svg


def test_both_mistake_lists(text_run: tuple[Path, str, Page]) -> None:
    run, html, page = text_run
    df = pd.read_parquet(run / "predictions.parquet")
    n_model = int((df.y_pred != df.y_true).sum())
    n_base = int((df["baseline:y_pred"] != df.y_true).sum())
    text = page.text["mistakes"]
    assert f"The model misclassifies {n_model} of {len(df)} test messages, the baseline {n_base}" in text
    assert "Messages the model got wrong (4 most confident)" in text
    assert "Messages the baseline got wrong (4 most confident)" in text
    section = _section(html, "mistakes")
    model_list, base_list = section.split("<h3>")[1:3]
    assert model_list.count("<tr>") == 5 and base_list.count("<tr>") == 5  # header + evaluate.misclassified
    # the model's most confident mistake comes first, with the baseline's verdict beside it
    wrong = df[df.y_pred != df.y_true].sort_values("confidence", ascending=False)
    first = model_list.split("<tr>")[2]
    assert f">{wrong.iloc[0]['row']}<" in first and f"({wrong.iloc[0]['confidence']:.4g})" in first
    assert "spam/" in first and "&lt;b&gt;msg&lt;/b&gt;" in first  # the source, escaped
    b_wrong = df[df["baseline:y_pred"] != df.y_true]
    spam = b_wrong["baseline:y_pred"] == "spam"
    b_conf = np.where(spam, b_wrong["baseline:proba:spam"], b_wrong["baseline:proba:ham"])
    assert f"({b_conf.max():.4g})" in base_list.split("<tr>")[2]


def test_messages_are_escaped_and_cut(text_run: tuple[Path, str, Page]) -> None:
    run, html, page = text_run
    assert write_report(run).read_text(encoding="utf-8") == html  # deterministic
    assert EVIL not in html and page.scripts == 0
    section = _section(html, "mistakes")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    details = re.search(r'<details class="msg"><summary>(.*?)</summary><pre>(.*?)</pre></details>', section, re.S)
    assert details is not None
    summary, full = details.groups()
    assert summary.endswith("…") and "  " not in summary and "\n" not in summary  # whitespace collapsed
    assert len(summary) < SNIPPET_CHARS + 200  # 400 characters plus what escaping adds
    assert "Claim   your prize now!" in full and "Unsubscribe &lt;a href=&#x27;x&#x27;&gt;" in full


def test_run_without_the_new_keys(tmp_path: Path) -> None:
    run = make_text_run(tmp_path / "old", new_keys=False)
    html = write_report(run).read_text(encoding="utf-8")
    page = Page(html)
    assert "No tuned threshold recorded" in page.text["results"]
    results = _section(html, "results")
    assert "model at argmax" in results and "baseline" not in results.split("Decision threshold")[1]
    assert "Messages the model got wrong" in page.text["mistakes"]
    assert "Not available: predictions.parquet holds no baseline predictions" in page.text["mistakes"]
    assert EVIL not in html
    # and without probability columns at all: the curve degrades to a note
    df = pd.read_parquet(run / "predictions.parquet").drop(columns=["proba:ham", "proba:spam"])
    df.to_parquet(run / "predictions.parquet")
    page = Page(write_report(run).read_text(encoding="utf-8"))
    assert "Not available: precision–recall curve" in page.text["results"]


def test_text_regression_errors_show_the_message(tmp_path: Path) -> None:
    run = tmp_path / "reg"
    run.mkdir()
    frame = {"row": [0, 1, 2], "y_true": [1.0, 2.0, 3.0], "y_pred": [1.5, 2.0, 0.0], "baseline:y_pred": [1.0, 1.0, 9.0]}
    pd.DataFrame({**frame, "text": ["short", EVIL, LONG]}).to_parquet(run / "predictions.parquet")
    (run / "run.json").write_text(json.dumps({"task_kind": "regression"}))
    html = write_report(run).read_text(encoding="utf-8")
    errors = _section(html, "errors")
    assert "<th>error</th><th>baseline</th><th>text</th>" in errors
    assert '<details class="msg"><summary>Dear friend, Claim your prize now!' in errors  # HTML kept, not re-escaped
    assert EVIL not in html and "&lt;script&gt;" in errors


def test_a_test_fpr_above_the_cap_is_called_out(tmp_path: Path) -> None:
    run = make_text_run(tmp_path / "leaky")
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["decision"]["test"]["fpr"] = 0.05
    metrics["baseline"]["decision"]["notes"] = ["the validation split has no positive row; <i>0.5</i>"]
    (run / "metrics.json").write_text(json.dumps(metrics))
    results = Page(write_report(run).read_text(encoding="utf-8")).text["results"]
    val = metrics["decision"]["val"]
    assert f"test (0.05) is above the cap of 0.01 it was tuned to on {val['fp'] + val['tn']} validation" in results
    assert "many more than 100 negatives" in results
    assert "baseline (TF-IDF + logistic regression)'s false-positive rate" not in results
    assert "baseline (TF-IDF + logistic regression): the validation split has no positive row; <i>0.5</i>" in results
