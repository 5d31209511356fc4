"""An image-generation run end to end: judged metrics and report, `generate` on the run and on its package (the
same images for a seed), the CLI, and the refusals (bad class, predict, compress, wrong data)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from clirun import in_process
from PIL import Image
from typer.testing import CliRunner

import shipml
from shipml.cli import app
from shipml.errors import DataError, ShipmlError
from shipml.export import export_run
from shipml.export.generator import PARITY_LEVELS, PARITY_SHARE
from shipml.run import Run
from shipml.runtime import Package

runner = CliRunner()


@pytest.fixture(scope="module")
def package(generation_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(generation_run, tmp_path_factory.mktemp("pkg") / "package", quiet=True)


def test_metrics_are_judged_and_reported(generation_run: Path) -> None:
    m = json.loads((generation_run / "metrics.json").read_text())
    test, gen, judge = m["test"], m["generation"], m["judge"]
    assert test["fid_ratio"]["value"] == pytest.approx(gen["fid"] / gen["fid_floor"])
    assert gen["fid_floor"] > 0 and gen["fid"] > 0 and gen["n"] == 200
    assert 0 <= test["precision"]["value"] <= 1 and 0 <= test["recall"]["value"] <= 1
    assert 0 <= test["requested_share"]["value"] <= 1 and len(gen["per_class"]) == 10
    assert gen["covered"] == sum(r["covered"] for r in gen["per_class"])
    assert judge["source"] == "trained" and 0 < judge["test_accuracy"] <= 1 and "Inception" in judge["note"]
    assert (generation_run / "judge" / "model.safetensors").is_file()
    html = (generation_run / "report.html").read_text()
    assert "Sample quality" in html and "not Inception" in html and "real-vs-real floor" in html
    assert html.count("data:image/png;base64,") == 3  # the 3 epoch grids, inline
    assert "Confusion" not in html  # no classifier sections


def test_generate_on_run_is_deterministic_and_names_classes(generation_run: Path) -> None:
    run = Run(generation_run)
    a, b = run.generate("7", 6, seed=1), run.generate("7", 6, seed=1)
    assert a.dtype == np.uint8 and a.shape == (6, 8, 8, 1) and np.array_equal(a, b)
    assert not np.array_equal(a, run.generate("7", 6, seed=2))
    assert not np.array_equal(a, run.generate("3", 6, seed=1))
    with pytest.raises(DataError, match=r"class '12' .*classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9"):
        run.generate("12", 2, seed=0)
    with pytest.raises(DataError, match="give one of"):
        run.generate(None, 2, seed=0)
    with pytest.raises(DataError, match="from 1 to 1024"):
        run.generate("1", 0, seed=0)
    with pytest.raises(DataError, match="shipml generate"):
        run.predict(np.zeros((1, 8, 8, 1), dtype=np.uint8))


def test_package_draws_the_runs_images(generation_run: Path, package: Path) -> None:
    pkg = Package.open(package)
    assert pkg.kind == "generation" and pkg.classes == [str(i) for i in range(10)]
    assert [i["name"] for i in pkg.signature["inputs"]] == ["noise", "class"]
    assert pkg.signature["outputs"][0]["dtype"] == "uint8"
    parity = pkg.metrics["parity"]
    assert parity["max_abs_diff"] <= PARITY_LEVELS and parity["identical_pixels"] >= PARITY_SHARE
    assert pkg.metrics["test"] == Run(generation_run).metrics["test"]
    ours, torch_side = pkg.generate("4", 32, seed=9), Run(generation_run).generate("4", 32, seed=9)
    diff = np.abs(ours.astype(int) - torch_side.astype(int))
    assert diff.max() <= PARITY_LEVELS and (diff == 0).mean() >= PARITY_SHARE
    assert np.array_equal(ours, pkg.generate("4", 32, seed=9))
    with pytest.raises(DataError, match="classes: 0, 1"):
        pkg.generate("x", 1, seed=0)
    with pytest.raises(DataError, match="shipml generate"):
        pkg.predict(np.zeros((1, 8, 8, 1), dtype=np.uint8))


def test_package_generates_without_torch(package: Path) -> None:
    code = ("import sys; sys.modules['torch'] = None\n"
            "from shipml.runtime import Package\n"
            f"imgs = Package.open({str(package)!r}).generate('2', 3, seed=0)\n"
            "assert imgs.shape == (3, 8, 8, 1) and 'torch' not in [m for m in sys.modules if sys.modules[m]]\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_generate_on_run_and_package(generation_run: Path, package: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for i, source in enumerate((generation_run, package)):
        out = tmp_path / f"sevens-{i}.png"
        result = runner.invoke(app, ["generate", str(source), "--class", "7", "--n", "16", "--seed", "1", "-o",
                                     str(out)])
        assert result.exit_code == 0, result.output
        assert Image.open(out).size == (4 * 10 + 2, 4 * 10 + 2)  # a 4x4 grid of 8x8 images with 2-pixel gaps
    one = tmp_path / "one.png"
    assert runner.invoke(app, ["generate", str(package), "--class", "7", "--n", "1", "-o", str(one)]).exit_code == 0
    assert Image.open(one).size == (8, 8)
    bad = in_process("generate", str(generation_run), "--class", "12", "-o", str(tmp_path / "x.png"), cwd=tmp_path,
                     capsys=capsys, monkeypatch=monkeypatch)
    assert bad.returncode == 2 and "0, 1, 2" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "x.png").exists()


def test_cli_generate_refuses_a_classifier(image_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    result = in_process("generate", str(image_run), "--class", "1", "-o", str(tmp_path / "x.png"), cwd=tmp_path,
                        capsys=capsys, monkeypatch=monkeypatch)
    assert result.returncode == 2 and "needs an image-generation run" in result.stderr


def test_compress_is_refused(generation_run: Path, tmp_path: Path) -> None:
    from shipml.compress import compress_run

    copy = tmp_path / generation_run.name
    shutil.copytree(generation_run, copy)
    with pytest.raises(ShipmlError, match=r"does not support int8.*shipml export"):
        compress_run(copy, methods="int8", measure=False, quiet=True)


def test_wrong_data_is_a_clear_error(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("x,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    for path in ("sklearn:breast_cancer", str(table)):
        with pytest.raises(ShipmlError, match="image"):
            shipml.train({"data": {"path": path}, "task": {"name": "image-generation"},
                          "output_dir": str(tmp_path / "runs")}, quiet=True)


def test_init_writes_a_generation_config(small_data: Path) -> None:
    import yaml

    from shipml.config import parse_config
    from shipml.scaffold import init_config

    text = init_config(str(small_data / "mnist400.tar.gz"), task="image-generation")
    cfg = parse_config(yaml.safe_load(text))
    assert cfg.task.name == "image-generation" and cfg.model is not None and cfg.model.arch == "dcgan"
    from shipml.config.schema import TrainConfig
    from shipml.tasks import get_task_class

    recipe = get_task_class("image-generation").recipe["train"]["epochs"]
    assert recipe != TrainConfig().epochs  # so the next line can tell the recipe from the default
    assert cfg.train.epochs == recipe and "judge:" in text
