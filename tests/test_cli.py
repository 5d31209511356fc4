"""End to end through the `shipml` command on a small slice of real data, and bad input at the edge."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from clirun import in_process


def shipml(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shipml.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def mnist_slice(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 real MNIST digits per class (tests/fixtures/mnist400.tar.gz), plus one file that only pretends to be a PNG."""
    root = tmp_path_factory.mktemp("slice") / "digits"
    per_class: dict[str, int] = {}
    with tarfile.open(small_data / "mnist400.tar.gz") as tar:
        for m in tar:
            parts = Path(m.name).parts
            if not m.isfile() or len(parts) < 3:
                continue
            label = parts[-2]
            if per_class.get(label, 0) >= 40:
                continue
            per_class[label] = per_class.get(label, 0) + 1
            (root / label).mkdir(parents=True, exist_ok=True)
            (root / label / parts[-1]).write_bytes(tar.extractfile(m).read())  # type: ignore[union-attr]
    (root / "7" / "broken.png").write_bytes(b"this is not an image")
    return root


@pytest.mark.slow
def test_init_train_evaluate_predict_report(mnist_slice: Path, tmp_path: Path) -> None:
    before = _tree_digest(mnist_slice)
    init = shipml("init", "--data", str(mnist_slice), "--task", "image-classification", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    (tmp_path / "cfg.yaml").write_text(init.stdout)
    assert yaml.safe_load(init.stdout)["task"]["name"] == "image-classification"

    train = shipml("train", "cfg.yaml", "--set", "train.epochs=10", "--set", "evaluate.bootstrap=200", "--quiet",
                   cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    run = tmp_path / train.stdout.strip().splitlines()[-1]
    for name in ("config.yaml", "run.json", "data.json", "metrics.jsonl", "metrics.json", "predictions.parquet",
                 "report.html", "model/model.safetensors", "model/task.json"):
        assert (run / name).is_file(), name
    assert "broken.png" in json.dumps(json.loads((run / "data.json").read_text())["cleaning"]["skipped"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"]["value"] > 0.7  # 10 epochs on 320 training images; chance is 0.1
    assert metrics["baseline"]["name"]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 10
    assert json.loads((run / "run.json").read_text())["status"] == "finished"

    ev = shipml("evaluate", str(run), "--quiet", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    assert json.loads((run / "metrics.json").read_text())["test"]["accuracy"] == metrics["test"]["accuracy"]

    pred = shipml("predict", str(run), str(mnist_slice / "7"), "-o", "p.csv", cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    frame = pd.read_csv(tmp_path / "p.csv")
    assert len(frame) == 40 and "broken.png" in pred.stderr  # the unreadable file is reported, not fatal
    assert set(frame["prediction"].astype(str)) <= {str(i) for i in range(10)}
    assert (frame["prediction"].astype(str) == "7").mean() > 0.5

    (run / "report.html").unlink()
    rep = shipml("report", str(run), cwd=tmp_path)
    assert rep.returncode == 0 and (run / "report.html").stat().st_size > 10_000
    assert _tree_digest(mnist_slice) == before, "the user's data was modified"


def _write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        ({}, ["train", "nope.yaml"], "config file not found"),
        ({"c.yaml": "data: {path: x.csv}\ntask: {name: tabular-classification}\ntrain: {epoch: 3}\n"},
         ["train", "c.yaml"], "train.epoch: unknown field"),
        ({"c.yaml": "data: {path: missing.csv}\ntask: {name: tabular-classification}\n"},
         ["train", "c.yaml"], "missing.csv"),
        ({"c.yaml": "data: {path: t.csv}\ntask: {name: tabular-classification}\n",
          "t.csv": "a,b\n1,2\n3,4\n5,6\n"}, ["train", "c.yaml"], "label"),
        ({"c.yaml": "data: {path: t.csv}\ntask: {name: tabular-classification}\n",
          "t.csv": "a,label\n1,x\n2,x\n3,x\n4,x\n"}, ["train", "c.yaml"], "same label"),
        ({"c.yaml": "data: {path: empty}\ntask: {name: image-classification}\n", "empty/.keep": ""},
         ["train", "c.yaml"], "no images"),
        ({"c.yaml": "data: {path: 'sklearn:iris'}\ntask: {name: text-classifier}\n"}, ["train", "c.yaml"],
         "registered tasks"),
        ({}, ["train", "--resume", "not-a-run"], "not a shipml run directory"),
        ({}, ["predict", "not-a-run", "x.csv"], "not-a-run does not exist"),
        ({"folder/x": ""}, ["predict", "folder", "x.csv"], "not a shipml run directory"),
        ({"c.yaml": "data: {path: 'sklearn:iris'}\ntask: {name: tabular-classification, threshold: "
                    "{strategy: max_f1, positive: virginca}}\n"}, ["train", "c.yaml"], "positive: 'virginca'"),
        ({}, ["init", "--data", "nowhere.csv"], "nowhere.csv"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path: Path, files: dict[str, str], args: list[str], message: str,
                                      capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        _write(tmp_path, name, text)
    before = _tree_digest(tmp_path)
    res = in_process(*args, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    assert "error:" in res.stderr and message.lower() in res.stderr.lower(), res.stderr
    after = {k: v for k, v in _tree_digest(tmp_path).items() if not k.startswith("runs/")}
    assert after == before


def test_class_with_one_sample_is_a_warning_not_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    rows = ["a,b,label"] + [f"{i},{i % 7},{'x' if i % 2 else 'y'}" for i in range(60)] + ["100,1,rare"]
    _write(tmp_path, "t.csv", "\n".join(rows) + "\n")
    _write(tmp_path, "c.yaml", "data: {path: t.csv}\ntask: {name: tabular-classification}\n"
                               "train: {epochs: 1}\nevaluate: {bootstrap: 0}\n")
    res = in_process("train", "c.yaml", "--quiet", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert res.returncode == 0, res.stderr
    assert "rare" in res.stderr  # the warning names the dropped class


def test_tasks_lists_the_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    res = in_process("tasks", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert res.returncode == 0
    for name in ("image-classification", "tabular-classification", "tabular-regression"):
        assert name in res.stdout
