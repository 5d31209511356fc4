"""release / promote / rollback end to end on small real packages: the first release freezes the holdout, a
worse candidate is blocked by the gates (logged, nothing moved), --force needs a reason, canary and promote,
rollback goes back one production at a time; the CLI on top of the same API."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from test_runtime_package import IMAGE_PREP, INPUTS, image_model, write_package

from shipml.cli import app
from shipml.errors import RegistryError
from shipml.registry import Registry
from shipml.runtime import Package
from shipml.runtime.format import write_manifest

CLASSES = ["cat", "dog", "eel"]


def _package(folder: Path, seed: int, tag: str) -> Path:
    """An image package; `seed` sets its weights, `tag` only its provenance (same network, another digest)."""
    write_package(folder, image_model(3, 6, 5, 3, seed=seed)[0], data_kind="images", inputs=INPUTS["images"](3, 6, 5),
                  preprocessing=IMAGE_PREP, classes=CLASSES)
    (folder / "provenance.json").write_text(json.dumps({"config": {"name": "pets"}, "tag": tag}))
    write_manifest(folder)
    return folder


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Registry, Path]:
    """v1 (seed 0), v2 (other weights: worse on v1's labels), v3 (v1's network again). The holdout's labels are
    v1's own predictions, so v1 is right on every row and v2 on about a third."""
    v1 = _package(tmp_path / "v1", 0, "first")
    v2 = _package(tmp_path / "v2", 1, "worse")
    v3 = _package(tmp_path / "v3", 0, "same network")
    pixels = np.random.default_rng(5).integers(0, 256, size=(300, 6, 5, 3), dtype=np.uint8)
    labels = Package.open(v1).predict(pixels)["prediction"].to_numpy()
    np.savez(tmp_path / "holdout.npz", images=pixels, labels=labels.astype(str))
    reg = Registry(tmp_path / "reg")
    assert [reg.register(p).version for p in (v1, v2, v3)] == [1, 2, 3]
    return reg, tmp_path / "holdout.npz"


def test_release_gates_canary_promote_rollback(setup: tuple[Registry, Path]) -> None:
    reg, holdout = setup
    with reg:
        first = reg.release("pets", 1, holdout=holdout, measure=False)
        assert first.alias == "production" and first.report.first_release and first.report.passed
        assert reg.catalog.holdout("pets") is not None

        with pytest.raises(RegistryError, match=r"blocked by .*gate"):
            reg.release("pets", 2, measure=False)
        assert reg.catalog.aliases("pets")["production"].version == 1  # nothing moved
        gate = [e for e in reg.history("pets") if e.kind == "gate"][-1]
        assert gate.version == 2 and gate.details["against"] == 1 and gate.details["passed"] is False
        blocked_by = {r["name"] for r in gate.details["results"] if not r["passed"]}
        assert any("paired" in n.lower() or "mcnemar" in n.lower() for n in blocked_by), blocked_by

        with pytest.raises(RegistryError, match="--force needs --reason"):
            reg.release("pets", 2, force=True, measure=False)
        forced = reg.release("pets", 2, force=True, reason="hotfix for a customer", measure=False)
        assert forced.forced and reg.catalog.aliases("pets")["production"].version == 2
        assert reg.history("pets")[-1].kind == "force" and reg.history("pets")[-1].why == "hotfix for a customer"

        assert reg.rollback("pets") == 1 and reg.catalog.aliases("pets")["production"].version == 1

        same = reg.release("pets", 3, canary=10, measure=False)  # v1's network: the paired test sees no change
        assert same.alias == "canary" and same.weight == 10 and same.report.passed
        paired = [r for r in same.report.results if "paired" in r.name.lower() or "mcnemar" in r.name.lower()]
        assert paired and paired[0].details.get("p_value") == 1.0
        aliases = reg.catalog.aliases("pets")
        assert (aliases["production"].version, aliases["canary"].version, aliases["canary"].weight) == (1, 3, 10)

        assert reg.promote("pets") == 3
        assert set(reg.catalog.aliases("pets")) == {"production"}
        assert reg.catalog.aliases("pets")["production"].version == 3
        assert reg.rollback("pets") == 1  # the production before v3
        with pytest.raises(RegistryError, match="nothing to roll back to"):
            reg.rollback("pets")
        other = holdout.parent / "other.npz"
        with np.load(holdout) as npz:
            np.savez(other, images=npz["images"][:50], labels=npz["labels"][:50])
        with pytest.raises(RegistryError, match="only taken at the first release"):
            reg.release("pets", 3, holdout=other, measure=False)
        assert reg.release("pets", 1, holdout=holdout, measure=False).version == 1  # the same rows: a retry is fine
        with pytest.raises(RegistryError, match="no canary to promote"):
            reg.promote("pets")


def test_first_release_without_a_run_or_holdout_is_refused(setup: tuple[Registry, Path]) -> None:
    reg, _ = setup
    with reg, pytest.raises(RegistryError, match="needs a holdout"):
        reg.release("pets", 1, measure=False)
    with Registry(reg.root) as again:
        assert "production" not in again.catalog.aliases("pets") and again.catalog.holdout("pets") is None


def test_cli_release_prints_the_gate_table(setup: tuple[Registry, Path]) -> None:
    reg, holdout = setup
    reg.close()
    args = ["--registry", str(reg.root)]
    runner = CliRunner()
    out = runner.invoke(app, ["release", "pets", "1", "--holdout", str(holdout), "--gate", "signature", *args])
    assert out.exit_code == 0, out.output
    assert "first release" in out.output and "pets v1 is production" in out.output
    blocked = runner.invoke(app, ["release", "pets", "2", "--gate", "paired", *args])
    assert isinstance(blocked.exception, RegistryError) and "blocked" in str(blocked.exception)
    out = runner.invoke(app, ["release", "pets", "3", "--canary", "25", "--gate", "paired", *args])
    assert out.exit_code == 0 and "canary (25% of traffic)" in out.output, out.output
    assert runner.invoke(app, ["promote", "pets", *args]).output.strip() == "pets v3 is production"
    assert runner.invoke(app, ["rollback", "pets", "--reason", "latency", *args]).output.strip() == \
        "pets v1 is production again"


def test_first_release_freezes_the_runs_test_split(table_run: Path, tmp_path: Path) -> None:
    """The README path: export a real run, register it, release it; the holdout is the run's test split."""
    import shutil

    from shipml.export import export_run, load_context
    from shipml.registry.holdout import open_holdout

    run = tmp_path / table_run.name
    shutil.copytree(table_run, run)
    export_run(run, quiet=True)
    with Registry(tmp_path / "reg") as reg:
        v = reg.register(run)
        got = reg.release(v.name, v.version, measure=False)
        assert got.alias == "production" and got.report.first_release
        frozen = open_holdout(reg.store, reg.catalog.holdout(v.name))
        ctx = load_context(run)
        assert len(frozen.rows) == len(ctx.test_idx)
        assert list(frozen.labels) == [ctx.task.classes[i] for i in ctx.y(ctx.test_idx)]


def test_a_release_racing_another_is_refused(setup: tuple[Registry, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Production moves (another release) while this release's gates run: this one is refused, nothing moves."""
    from shipml.registry import release as release_module

    reg, holdout = setup
    with reg:
        reg.release("pets", 1, holdout=holdout, measure=False)
        real = release_module.run_gates

        def gates_while_another_releases(*args: object, **kwargs: object) -> object:
            report = real(*args, **kwargs)
            reg.catalog.update_aliases("pets", {"production": (2, None)}, event="release", why="the other one")
            return report

        monkeypatch.setattr(release_module, "run_gates", gates_while_another_releases)
        with pytest.raises(RegistryError, match="another release moved it"):
            reg.release("pets", 3, measure=False)
        assert reg.catalog.aliases("pets")["production"].version == 2  # the other release stands
        assert [e.kind for e in reg.history("pets")][-1] == "gate"  # ours logged its gates, moved nothing


def test_gates_come_from_the_runs_release_config(setup: tuple[Registry, Path], tmp_path: Path) -> None:
    """`release.gates` in the run's shipml.yaml (recorded in the package's provenance) replaces the defaults;
    --gate replaces both."""
    reg, holdout = setup
    strict = _package(tmp_path / "v4", 0, "strict")  # v1's network, with a config demanding an impossible floor
    prov = json.loads((strict / "provenance.json").read_text())
    prov["config"]["release"] = {"gates": ["accuracy >= 1.01"], "alpha": 0.01}
    (strict / "provenance.json").write_text(json.dumps(prov))
    write_manifest(strict)
    with reg:
        number = reg.register(strict).version
        with pytest.raises(RegistryError, match=r"accuracy >= 1\.01"):
            reg.release("pets", number, holdout=holdout, measure=False)
        ok = reg.release("pets", number, gates=["signature"], measure=False)  # the command line wins
        assert ok.alias == "production" and [r.name for r in ok.report.results] == ["signature"]
