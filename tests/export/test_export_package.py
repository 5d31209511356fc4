"""Export: a finished run -> a checked package, for every task family; bad input leaves nothing behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import shipml
from shipml.errors import ExportError, ShipmlError
from shipml.export import export_run, load_context
from shipml.runtime import Package

RUNS = ["image_run", "table_run", "regression_run", "text_run"]


@pytest.fixture(scope="module")
def packages(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each run copied (the session's runs stay untouched) and exported once."""
    out = {}
    for name in RUNS:
        run = request.getfixturevalue(name)
        copy = tmp_path_factory.mktemp(name) / run.name
        shutil.copytree(run, copy)
        out[name] = export_run(copy, quiet=True)
    return out


@pytest.mark.parametrize("name", RUNS)
def test_export_has_parity_with_pytorch_on_the_test_split(packages: dict[str, Path], name: str) -> None:
    pkg = Package.open(packages[name])  # verifies every file's sha256
    files = {p.relative_to(pkg.path).as_posix() for p in pkg.path.rglob("*") if p.is_file()}
    expected = {"model.onnx", "signature.json", "metrics.json", "provenance.json", "reference.json", "MANIFEST.json"}
    assert expected <= files and files - expected <= {"assets/tokenizer.json"}
    ref = pkg.reference  # what live traffic is compared with: inputs on training rows, predictions held out
    want = {"image_run": {"brightness", "contrast"}, "text_run": {"tokens", "rare_share", "urls"},
            "table_run": {"feature:mean_radius"}, "regression_run": {"feature:bmi"}}[name]
    want |= {"predicted", "confidence"} if pkg.kind == "classification" else {"prediction"}
    assert want <= set(ref["signals"]), set(ref["signals"])
    assert ref["rows"]["predictions"] == pkg.metrics["test"]["n"] and ref["rows"]["inputs"] > ref["rows"]["predictions"]
    for summary in ref["signals"].values():
        counts = summary["counts"]
        total = sum(counts.values()) if summary["kind"] == "categorical" else sum(counts)
        assert total == summary["n"] > 0
    parity = pkg.metrics["parity"]
    assert parity["max_abs_diff"] <= 1e-4 and parity["tolerance"] == 1e-4
    assert parity["n"] == pkg.metrics["test"]["n"] > 0
    run_test = pkg.metrics["run"]
    if pkg.kind == "classification":
        assert parity["agreement"] == 1.0
        assert pkg.metrics["test"]["accuracy"]["value"] == pytest.approx(run_test["accuracy"]["value"])
    else:
        assert pkg.metrics["test"]["r2"]["value"] == pytest.approx(run_test["r2"]["value"], abs=1e-6)
    prov = pkg.provenance
    run_dir = packages[name].parent
    assert prov["run"] == run_dir.name and prov["seed"] == 0
    assert prov["data_fingerprint"] == json.loads((run_dir / "data.json").read_text())["fingerprint"]
    assert {"torch", "onnx", "onnxruntime", "shipml"} <= set(prov["versions"])
    sig = pkg.signature
    assert sig["variant"]["name"] == "fp32" and all(i["shape"][0] == "batch" for i in sig["inputs"])
    for p in pkg.path.rglob("*"):  # nothing in a package is a pickle
        assert not (p.is_file() and p.read_bytes()[:1] == b"\x80"), p


def test_text_package_carries_tokenizer_decision_and_email_settings(packages: dict[str, Path]) -> None:
    sig = Package.open(packages["text_run"]).signature
    prep = sig["preprocessing"]
    assert prep["tokenizer"] == "tokenizer.json" and "backbone" not in prep  # no path of the training machine
    assert prep["email"]["headers"] == ["subject", "from"]
    assert sig["decision"]["strategy"] == "max_f1" and sig["classes"][sig["decision"]["positive"]] == "spam"
    assert [i["shape"] for i in sig["inputs"]] == [["batch", "sequence"], ["batch", "sequence"]]


_FRESH = """
import json, sys

class _Blocked:  # a predict-only install: importing any of these fails
    BLOCKED = ("torch", "transformers", "pydantic", "yaml", "sklearn", "accelerate", "safetensors")

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError(f"{name} is not installed here")
        return None

sys.meta_path.insert(0, _Blocked())
from shipml.runtime import Package
pkg = Package.open(sys.argv[1])
frame = pkg.predict(sys.argv[2])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in _Blocked.BLOCKED or m in ("shipml.data", "shipml.config"))
assert not loaded, loaded
print(frame.to_json(orient="records"))
"""


def _inputs(name: str, run: shipml.Run, tmp_path: Path, email_dir: Path) -> str:
    """Raw inputs a user would hand over: a folder of PNGs, raw emails, a CSV of feature rows."""
    ctx = load_context(run)
    if name == "image_run":
        return ctx.data.source + "/3"
    if name == "text_run":
        return str(email_dir / "spam")  # raw emails, parsed with the package's email settings
    path = tmp_path / "rows.csv.gz"  # compressed tables read the same way on both paths
    ctx.raw(ctx.test_idx).to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize("name", RUNS)
def test_package_predicts_in_a_fresh_process_without_torch_or_pydantic(packages: dict[str, Path], name: str,
                                                                        tmp_path: Path, email_dir: Path) -> None:
    """The same predictions as the run's PyTorch model, from a process where torch, transformers, pydantic
    (and so shipml.config / shipml.data) cannot be imported."""
    run = shipml.Run(packages[name].parent)
    inputs = _inputs(name, run, tmp_path, email_dir)
    out = subprocess.run([sys.executable, "-c", _FRESH, str(packages[name]), inputs], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    ours = pd.DataFrame(json.loads(out.stdout))
    theirs = run.predict(inputs)
    assert list(ours.columns) == list(theirs.columns)
    cols = [c for c in theirs.columns if c.startswith("proba:")]
    if cols:  # classification: the same labels, and probabilities within float noise of PyTorch
        assert list(ours["prediction"]) == list(theirs["prediction"])
    else:
        cols = ["prediction"]
    # float noise between onnxruntime and PyTorch: 1e-5 on probabilities, relative on values in target units
    np.testing.assert_allclose(ours[cols].to_numpy(dtype=float), theirs[cols].to_numpy(dtype=float), rtol=1e-6,
                               atol=1e-5)


@pytest.mark.parametrize("name", RUNS)
def test_cli_predict_on_run_and_package_agree(packages: dict[str, Path], name: str, tmp_path: Path,
                                              email_dir: Path) -> None:
    """`shipml predict RUN x` and `shipml predict RUN/package x` print the same rows: one input path."""
    from typer.testing import CliRunner

    from shipml.cli import app

    run_dir = packages[name].parent
    inputs = _inputs(name, shipml.Run(run_dir), tmp_path, email_dir)
    frames = []
    for source in (run_dir, packages[name]):
        res = CliRunner().invoke(app, ["predict", str(source), inputs, "-o", str(tmp_path / f"{source.name}.csv")])
        assert res.exit_code == 0, res.output
        frames.append(pd.read_csv(tmp_path / f"{source.name}.csv"))
    a, b = frames
    assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0
    for col in a.columns:
        if not pd.api.types.is_numeric_dtype(a[col]):
            assert a[col].tolist() == b[col].tolist(), col
        else:
            np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=1e-6, atol=1e-5, err_msg=col)


def test_unfinished_run_is_refused_and_nothing_is_written(image_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / image_run.name
    shutil.copytree(image_run, copy)
    (copy / "model" / "model.safetensors").unlink()
    with pytest.raises(ShipmlError, match="no finished model"):
        export_run(copy, quiet=True)
    assert not (copy / "package").exists()


def test_failed_parity_fails_the_export_with_figures(image_run: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import shipml.export as export_mod

    copy = tmp_path / image_run.name
    shutil.copytree(image_run, copy)
    real = export_mod.reference_outputs
    monkeypatch.setattr(export_mod, "reference_outputs", lambda model, ctx: real(model, ctx) + 0.01)
    with pytest.raises(ExportError, match=r"parity check failed .* 0\.01 > 0\.0001"):
        export_run(copy, quiet=True)
    assert not (copy / "package").exists()
    assert not [p for p in copy.iterdir() if p.name.startswith(".")  and p.name != ".lock"]  # no temp leftovers


def test_an_export_onnxruntime_cannot_load_is_an_export_error(image_run: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import shipml.export as export_mod

    copy = tmp_path / image_run.name
    shutil.copytree(image_run, copy)

    def broken(model, task, example, path):  # type: ignore[no-untyped-def]
        path.write_bytes(b"not an onnx model")
        return list(example), "logits"

    monkeypatch.setattr(export_mod, "export_onnx", broken)
    with pytest.raises(ExportError):
        export_run(copy, quiet=True)
    assert not (copy / "package").exists()


def test_triton_repository(packages: dict[str, Path], tmp_path: Path) -> None:
    folder = export_run(packages["text_run"].parent, tmp_path / "repo", fmt="triton", name="spam", quiet=True)
    assert folder == tmp_path / "repo" / "spam"
    assert (folder / "1" / "model.onnx").read_bytes() == (packages["text_run"] / "model.onnx").read_bytes()
    config = (folder / "config.pbtxt").read_text()
    assert 'name: "spam"' in config and 'platform: "onnxruntime_onnx"' in config
    assert 'name: "input_ids"' in config and "data_type: TYPE_INT64" in config and "dims: [ -1 ]" in config
    assert 'name: "logits"' in config and "dims: [ 2 ]" in config and "max_batch_size: 64" in config
    with pytest.raises(ExportError, match="format"):
        export_run(packages["text_run"].parent, fmt="tensorrt", quiet=True)


def test_export_never_replaces_what_it_did_not_write(image_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / image_run.name
    shutil.copytree(image_run, copy)
    mine = tmp_path / "models"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="is not a shipml package"):
        export_run(copy, mine, quiet=True)
    assert (mine / "notes.txt").read_text() == "keep me"
    with pytest.raises(ExportError, match="would replace the run directory"):
        export_run(copy, copy, quiet=True)
    with pytest.raises(ExportError, match=r"Triton model name '\.'"):
        export_run(copy, tmp_path / "repo", fmt="triton", name=".", quiet=True)
    assert (copy / "model" / "model.safetensors").is_file() and not (copy / "package").exists()
    first = export_run(copy, tmp_path / "pkg", quiet=True)
    assert export_run(copy, tmp_path / "pkg", quiet=True) == first  # an earlier package may be replaced


def test_export_removes_what_a_killed_export_left(table_run: Path, tmp_path: Path) -> None:
    """kill -9 during export/compress leaves temp folders (90 MB each for a text model); the next export removes
    those whose process is gone, and keeps a live writer's."""
    import os
    import time

    run_dir = tmp_path / table_run.name
    shutil.copytree(table_run, run_dir)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run_dir / "variants").mkdir()
    from shipml.core.files import _HOST

    left = [run_dir / f".tmp-{_HOST}.{dead.pid}-export-x1", run_dir / "variants" / f".tmp-{_HOST}.{dead.pid}-work-x2",
            run_dir / ".package.tmp-0a1b2c"]  # the last: a name from before temp names carried the pid
    for folder in left:
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"x" * 1000)
    os.utime(left[-1], (time.time() - 7 * 3600,) * 2)
    live = run_dir / f".tmp-{_HOST}.{os.getpid()}-export-busy"
    live.mkdir()
    export_run(run_dir, quiet=True)
    assert not any(p.exists() for p in left)
    assert live.exists()
