"""The report: built from a realistic run directory, self-contained, escaped, deterministic, tolerant."""

from __future__ import annotations

import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from shipml.config import dump_config, parse_config
from shipml.data.dataset import CleaningLog, Dataset
from shipml.errors import ConfigError
from shipml.evaluate import classification_metrics, regression_metrics, write_report
from shipml.evaluate.report import render_report
from shipml.evaluate.rundir import read_run

EVIL = "<script>alert(1)</script>"
CLASSES = sorted(["zero", "one", "two", EVIL])
SECTIONS = ["overview", "comparison", "results", "mistakes", "curves", "frontier", "data", "environment", "config"]


class Page(HTMLParser):
    """What the tests look at: section ids, links, image sources, script tags, text per section."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.links: list[str] = []  # every src and href
        self.images: list[str] = []
        self.scripts = 0
        self.text: dict[str, str] = {}
        self._section = ""
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self._section = a.get("id") or ""
            self.sections.append(self._section)
        if tag == "script":
            self.scripts += 1
        if tag == "img":
            self.images.append(a.get("src") or "")
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]

    def handle_data(self, data: str) -> None:
        self.text[self._section] = self.text.get(self._section, "") + data


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _run_json(kind: str, task: str) -> dict[str, Any]:
    return {
        "id": "digits-20250101-120000",
        "name": "digits",
        "task": task,
        "task_kind": kind,
        "status": "finished",
        "created": "2025-01-01T12:00:00+00:00",
        "finished": "2025-01-01T12:05:00+00:00",
        "train_seconds": 290.5,
        "best": {"step": 400, "epoch": 4, "metric": "accuracy" if kind == "classification" else "r2", "value": 0.9},
        "stopped_early": False,
        "environment": {
            "python": "3.11.7",
            "platform": "Linux",
            "cpu": "x86_64",
            "threads": 2,
            "torch": "2.13.0",
            "numpy": "2.0",
            "sklearn": "1.9",
            "shipml": "0.1.0",
            "precision": "fp32",
        },
        "seed": 0,
        "params": 12345,
    }


def _records() -> str:
    lines = [
        json.dumps(
            {"kind": "train", "step": s, "epoch": s / 100, "loss": 2 / (1 + s / 50), "lr": 1e-3, "samples_per_s": 900.0}
        )
        for s in range(1, 401)
    ]
    lines += [
        json.dumps({"kind": "val", "step": s, "epoch": s / 100, "loss": 2 / (1 + s / 60), "accuracy": 0.5 + s / 1000})
        for s in range(100, 401, 100)
    ]
    return "\n".join(lines) + '\n{"kind": "train", "st'  # a torn last line, as a crash leaves it


def make_image_run(run_dir: Path, *, model_signal: float = 2.0, baseline_signal: float = 0.0) -> Path:
    """A finished image-classification run with every file the report reads."""
    run_dir.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    keep = np.flatnonzero(digits.target < 4)[:200]
    images = (digits.images[keep] * (255 / 16)).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    labels = np.array([CLASSES[t] for t in digits.target[keep]])
    split = np.where(np.arange(len(keep)) % 5 == 0, "test", np.where(np.arange(len(keep)) % 5 == 1, "val", "train"))
    log = CleaningLog()
    log.action("removed 3 exact duplicate images")
    log.warn("class 'x' has 1 image; dropped")
    for i in range(60):
        log.skip(f"bad/{i}.png", "not an image (cannot identify image file)")
    data = Dataset(
        "images",
        pd.DataFrame({"source": [f"{lab}/{i}.png" for i, lab in enumerate(labels)], "label": labels}),
        "label",
        [],
        [],
        split,
        "ab" * 32,
        log,
        classes=CLASSES,
        images=images,
        source="digits/",
    )

    def proba(rows: np.ndarray, signal: float, seed: int) -> np.ndarray:
        y = data.y()[rows]
        logits = np.random.default_rng(seed).normal(size=(len(rows), len(CLASSES)))
        logits[np.arange(len(rows)), y] += signal
        e = np.exp(logits)
        return e / e.sum(1, keepdims=True)

    test, val = data.indices("test"), data.indices("val")
    p_test = proba(test, model_signal, 1)
    metrics = {
        "test": classification_metrics(data.y("test"), p_test, CLASSES, n_bootstrap=200),
        "val": classification_metrics(data.y("val"), proba(val, model_signal, 2), CLASSES, n_bootstrap=200),
        "baseline": {
            "name": "logistic regression",
            "test": classification_metrics(data.y("test"), proba(test, baseline_signal, 3), CLASSES, n_bootstrap=200),
            "fit_seconds": 1.25,
        },
    }
    pred = p_test.argmax(1)
    predictions = pd.DataFrame(
        {
            "row": test,
            "y_true": [CLASSES[i] for i in data.y("test")],
            "y_pred": [CLASSES[i] for i in pred],
            "confidence": p_test.max(1),
            **{f"proba:{c}": p_test[:, i] for i, c in enumerate(CLASSES)},
            "image_png": [_png(images[r, :, :, 0]) for r in test],
            "source": data.frame["source"].iloc[test].to_numpy(),
        }
    )
    config = parse_config(
        {
            "name": "digits",
            "data": {"path": "digits/"},
            "task": {"name": "image-classification"},
            "evaluate": {"misclassified": 5},
        }
    )
    (run_dir / "config.yaml").write_text(dump_config(config) + f"# note: {EVIL}\n", encoding="utf-8")
    (run_dir / "run.json").write_text(json.dumps(_run_json("classification", "image-classification")))
    (run_dir / "data.json").write_text(json.dumps(data.summary()))
    (run_dir / "metrics.jsonl").write_text(_records())
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    predictions.to_parquet(run_dir / "predictions.parquet")
    return run_dir


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_run(tmp_path_factory.mktemp("runs") / "digits")


@pytest.fixture(scope="module")
def image_page(image_run: Path) -> tuple[str, Page]:
    html = write_report(image_run).read_text(encoding="utf-8")
    return html, Page(html)


def test_sections_and_table_of_contents(image_run: Path, image_page: tuple[str, Page]) -> None:
    html, page = image_page
    assert (image_run / "report.html").is_file()
    assert page.sections == SECTIONS
    assert [f"#{s}" for s in SECTIONS] == [link for link in page.links if link.startswith("#")]
    assert not [p for p in image_run.iterdir() if p.name.endswith(".tmp")]  # the atomic write left nothing behind
    assert "not compressed yet" in html  # the frontier section says how to get one
    assert html.startswith("<!DOCTYPE html>")


def test_values_are_in_their_sections(image_run: Path, image_page: tuple[str, Page]) -> None:
    _, page = image_page
    metrics = json.loads((image_run / "metrics.json").read_text())
    accuracy = metrics["test"]["accuracy"]
    assert f"{accuracy['value']:.4g} [{accuracy['ci_low']:.4g}, {accuracy['ci_high']:.4g}]" in page.text["comparison"]
    assert "earned its keep" in page.text["comparison"]
    assert "logistic regression" in page.text["comparison"]
    assert "digits-20250101-120000" in page.text["overview"]
    assert "4 min 50 s" in page.text["overview"]
    assert "12,345" in page.text["overview"]
    assert "ab" * 32 in page.text["data"]
    assert "removed 3 exact duplicate images" in page.text["data"]
    assert "Skipped items (60)" in page.text["data"] and "10 more not shown" in page.text["data"]
    assert "2.13.0" in page.text["environment"]
    assert "misclassified: 5" in page.text["config"]  # the config, verbatim
    for name in ("results", "curves"):
        assert "Not available" not in page.text[name], name


def test_misclassified_thumbnails_are_inline(image_run: Path, image_page: tuple[str, Page]) -> None:
    _, page = image_page
    predictions = pd.read_parquet(image_run / "predictions.parquet")
    wrong = predictions[predictions.y_true != predictions.y_pred]
    assert len(wrong) >= 5
    assert len(page.images) == 5  # evaluate.misclassified from the config
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    most_confident = wrong.sort_values("confidence", ascending=False).iloc[0]
    assert f"{most_confident['confidence']:.4g}" in page.text["mistakes"]
    assert f"{len(wrong)} of {len(predictions)} test rows are misclassified" in page.text["mistakes"]


def test_self_contained_and_escaped(image_page: tuple[str, Page]) -> None:
    html, page = image_page
    assert page.scripts == 0
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    external = [link for link in page.links if link.startswith(("http:", "https:", "//"))]
    assert external == []
    assert not re.search(r"<link\b|@import|url\((?!#)", html)  # only in-page url(#clip) references


def test_deterministic(image_run: Path, image_page: tuple[str, Page], tmp_path: Path) -> None:
    html, _ = image_page
    assert write_report(image_run).read_text(encoding="utf-8") == html
    copy = make_image_run(tmp_path / "again")  # same inputs written again elsewhere
    assert write_report(copy).read_text(encoding="utf-8") == html


@pytest.mark.parametrize(
    ("model", "baseline", "phrase"),
    [(3.0, 0.0, "deep learning earned its keep"), (1.0, 1.0, "intervals overlap"), (0.0, 4.0, "did not earn its keep")],
)
def test_verdict_is_honest(tmp_path: Path, model: float, baseline: float, phrase: str) -> None:
    run = make_image_run(tmp_path / "run", model_signal=model, baseline_signal=baseline)
    page = Page(render_report(read_run(run)))
    assert phrase in page.text["comparison"]


def test_missing_optional_files(image_run: Path, tmp_path: Path) -> None:
    run = make_image_run(tmp_path / "partial")
    (run / "metrics.jsonl").unlink()
    (run / "predictions.parquet").unlink()
    page = Page(write_report(run).read_text(encoding="utf-8"))
    assert page.sections == SECTIONS
    assert "Not available: metrics.jsonl not found" in page.text["curves"]
    assert "Not available: predictions.parquet not found" in page.text["mistakes"]
    assert "Not available" in page.text["results"]  # the calibration plot needs predictions
    assert "earned its keep" in page.text["comparison"]  # metrics.json still there


def test_empty_and_corrupt_run_directories(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run directory not found"):
        write_report(tmp_path / "no-such-run")
    empty = tmp_path / "empty"
    empty.mkdir()
    page = Page(write_report(empty).read_text(encoding="utf-8"))
    assert page.sections == SECTIONS
    for section in SECTIONS:
        assert "Not available" in page.text[section], section

    broken = make_image_run(tmp_path / "broken")
    (broken / "metrics.json").write_text("{not json")
    (broken / "predictions.parquet").write_bytes(b"garbage")
    page = Page(write_report(broken).read_text(encoding="utf-8"))
    assert "metrics.json could not be read" in page.text["overview"]
    assert "predictions.parquet could not be read" in page.text["mistakes"]

    odd = make_image_run(tmp_path / "odd")  # valid JSON, unexpected shapes (hand-edited or older files)
    (odd / "metrics.json").write_text(
        json.dumps({"test": {"accuracy": {"value": 0.9}, "per_class": {"a": 1}}, "baseline": 3})
    )
    (odd / "run.json").write_text(json.dumps({"best": [1], "environment": "linux"}))
    (odd / "config.yaml").write_text("evaluate: [1, 2]\n")
    page = Page(write_report(odd).read_text(encoding="utf-8"))
    assert page.sections == SECTIONS
    assert "No yardstick" in page.text["comparison"]


def test_regression_run(tmp_path: Path) -> None:
    run = tmp_path / "reg"
    run.mkdir()
    rng = np.random.default_rng(0)
    y = rng.normal(size=80) * 10
    pred = y + rng.normal(size=80)
    pred[7] += 40  # the worst prediction
    metrics = {
        "test": regression_metrics(y, pred, n_bootstrap=100),
        "baseline": {
            "name": "ridge regression",
            "test": regression_metrics(y, y + 5 * rng.normal(size=80), n_bootstrap=100),
            "fit_seconds": 0.01,
        },
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "run.json").write_text(json.dumps(_run_json("regression", "tabular-regression")))
    pd.DataFrame(
        {
            "row": np.arange(80) * 2,
            "y_true": y,
            "y_pred": pred,
            "baseline:y_pred": y + 5.0,
            "feature:age": rng.integers(20, 80, 80),
            f"feature:{EVIL}": ["x"] * 80,
        }
    ).to_parquet(run / "predictions.parquet")
    html = write_report(run).read_text(encoding="utf-8")
    page = Page(html)
    assert page.sections == [s if s != "mistakes" else "errors" for s in SECTIONS]
    assert "R²" in page.text["comparison"] and "earned its keep" in page.text["comparison"]
    assert "<svg" in html.split('id="results"')[1].split("</section>")[0]
    errors = page.text["errors"]
    assert "largest absolute error" in errors and "age" in errors
    section = html.split('id="errors"')[1].split("</section>")[0]
    assert '<tbody>\n<tr><td class="n">14</td>' in section  # rows[7] (row id 14) has the largest error
    assert "<th>baseline</th>" in section and f">{y[7] + 5:.4g}<" in section  # the baseline's prediction beside
    assert EVIL not in html


def test_baseline_prediction_beside_image_mistakes(tmp_path: Path) -> None:
    run = make_image_run(tmp_path / "with-baseline")
    df = pd.read_parquet(run / "predictions.parquet")
    df["baseline:y_pred"] = [EVIL] * len(df)  # a label is user text too
    df.to_parquet(run / "predictions.parquet")
    html = write_report(run).read_text(encoding="utf-8")
    captions = html.split('id="mistakes"')[1].split("</section>")[0]
    assert captions.count("<br>baseline <b>&lt;script&gt;") == 5
    assert EVIL not in html


def test_multiclass_has_no_decision_part(image_page: tuple[str, Page]) -> None:
    _, page = image_page
    assert "Decision threshold" not in page.text["results"]
    assert "precision–recall" not in page.text["results"]
