"""Registering packages: store then catalog, idempotent, run directories resolved to their package or variant,
bad sources refused with nothing written; the CLI commands on top of the same API."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from test_runtime_package import image_package, table_package

from shipml.cli import app
from shipml.errors import RegistryError
from shipml.registry import Registry, resolve_package


def _with_run_name(folder: Path, name: str) -> Path:
    """The test packages carry no provenance config; give them the run name export would have recorded."""
    from shipml.runtime.format import write_manifest

    prov = json.loads((folder / "provenance.json").read_text()) if (folder / "provenance.json").exists() else {}
    prov["config"] = {"name": name}
    (folder / "provenance.json").write_text(json.dumps(prov))
    write_manifest(folder)
    return folder


def _run_dir(tmp: Path) -> Path:
    run = tmp / "runs" / "spam-1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("name: spam\n")
    _with_run_name(image_package(run / "package")[0], "spam")
    _with_run_name(image_package(run / "variants" / "int8", classes=["ant", "bee", "cow"])[0], "spam")
    (run / "frontier.json").write_text(json.dumps({"selected": "int8"}))
    return run


def test_register_is_store_then_catalog_and_idempotent(tmp_path: Path) -> None:
    pkg = _with_run_name(image_package(tmp_path / "pkg")[0], "digits")
    other = _with_run_name(table_package(tmp_path / "other")[0], "digits")
    with Registry(tmp_path / "reg") as reg:
        first = reg.register(pkg)
        again = reg.register(pkg)
        second = reg.register(other, note="the table one")
        assert (first.name, first.version, first.new) == ("digits", 1, True)
        assert (again.version, again.new) == (1, False) and again.digest == first.digest
        assert (second.version, second.new) == (2, True)
        assert [v.number for v in reg.versions("digits")] == [1, 2]
        assert reg.version("digits", "2").note == "the table one"
        assert reg.store.has(first.digest) and reg.store.has(second.digest)
        served = reg.package("digits", 1)  # verified on open, runs
        assert served.signature == json.loads((pkg / "signature.json").read_text())
        assert [e.kind for e in reg.history("digits")] == ["register", "register"]


def test_run_directories_resolve_to_their_package_variant_or_target_pick(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    assert resolve_package(run) == run / "package"
    assert resolve_package(run, "int8") == run / "variants" / "int8"
    assert resolve_package(run, "target") == run / "variants" / "int8"
    assert resolve_package(run / "package") == run / "package"
    with pytest.raises(RegistryError, match="built variants: int8"):
        resolve_package(run, "distill")
    with pytest.raises(RegistryError, match="--variant only applies to a run directory"):
        resolve_package(run / "package", "int8")
    with Registry(tmp_path / "reg") as reg:
        assert reg.register(run, variant="int8").name == "spam"  # the run's name


@pytest.mark.parametrize("damage,message", [
    (lambda f: (f / "model.onnx").write_bytes(b"\x00" * 10), "cannot register"),
    (lambda f: (f / "extra.pkl").write_bytes(b"\x80\x04K\x01."), "cannot register"),
    (lambda f: shutil.rmtree(f), "does not exist"),
])
def test_bad_packages_are_refused_and_nothing_is_written(tmp_path: Path, damage: object, message: str) -> None:
    pkg = _with_run_name(image_package(tmp_path / "pkg")[0], "digits")
    damage(pkg)  # type: ignore[operator]
    with Registry(tmp_path / "reg") as reg:
        with pytest.raises(RegistryError, match=message):
            reg.register(pkg)
        assert reg.models() == [] and reg.store.digests() == []


def test_cli_register_models_history_show(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    reg = ["--registry", str(tmp_path / "reg")]
    runner = CliRunner()
    out = runner.invoke(app, ["register", str(run), *reg])
    assert out.exit_code == 0 and out.output.strip() == "spam v1", out.output
    out = runner.invoke(app, ["register", str(run), "--variant", "target", "--name", "spam", *reg])
    assert out.exit_code == 0 and out.output.strip() == "spam v2", out.output
    out = runner.invoke(app, ["register", str(run), *reg])
    assert out.output.strip() == "spam v1 (already registered)"
    out = runner.invoke(app, ["models", *reg])
    assert out.exit_code == 0 and "spam" in out.output and "2" in out.output
    out = runner.invoke(app, ["history", "spam", *reg])
    assert out.exit_code == 0 and out.output.count("register") == 2
    shown = json.loads(runner.invoke(app, ["show", "spam", "2", *reg]).output)
    assert shown["version"] == 2 and shown["signature"]["classes"] == ["ant", "bee", "cow"]
    bad = runner.invoke(app, ["register", str(run), "--name", "../evil", *reg])
    assert isinstance(bad.exception, RegistryError) and "is not allowed" in str(bad.exception)  # main() -> exit 2
    missing = runner.invoke(app, ["show", "spam", "9", *reg])
    assert isinstance(missing.exception, RegistryError) and "has no version 9" in str(missing.exception)
