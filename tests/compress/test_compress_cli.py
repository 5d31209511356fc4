"""The commands end to end: quickstart (train -> export -> compress -> frontier), predict on a package,
targets that fail, Triton export."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest


def shipml(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "shipml.cli", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=900)
    out.stderr = " ".join(out.stderr.split())  # Rich wraps long lines at the terminal width
    return out


@pytest.mark.slow
def test_quickstart_exports_compresses_and_prints_the_frontier(tmp_path: Path) -> None:
    out = shipml("quickstart", "--workdir", "qs", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "frontier" in out.stderr and "distill+int8" in out.stderr
    run = next((tmp_path / "qs" / "runs").iterdir())
    doc = json.loads((run / "frontier.json").read_text())
    assert [r["name"] for r in doc["rows"]] == ["fp32", "int8", "prune", "distill", "distill+int8"]
    assert all(r["accuracy"] > 0.9 for r in doc["rows"]), [(r["name"], r["accuracy"]) for r in doc["rows"]]
    assert "Compression frontier" in (run / "report.html").read_text()

    pred = shipml("predict", str(run / "package"), str(tmp_path / "qs" / "data" / "digits" / "3"), cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    frame = pd.read_csv(io.StringIO(pred.stdout))
    assert len(frame) > 100 and (frame["prediction"] == 3).mean() > 0.9

    typo = shipml("compress", str(run), "--target", "acuracy_drop<=0.01", cwd=tmp_path)
    assert typo.returncode == 2 and "did you mean 'accuracy_drop'" in typo.stderr
    unmet = shipml("compress", str(run), "--methods", "int8", "--target", "p50_ms<=0.0000001", "-q", cwd=tmp_path)
    assert unmet.returncode == 1 and "nothing met p50_ms<=1e-07" in unmet.stderr
    from_config = shipml("compress", str(run), "--set", "compress.target=p50_ms<=0.0000001", "-q", cwd=tmp_path)
    assert from_config.returncode == 1 and "nothing met" in from_config.stderr  # a configured target too
    met = shipml("compress", str(run), "--methods", "int8", "--target", "accuracy_drop<=0.5", "-q", cwd=tmp_path)
    assert met.returncode == 0, met.stderr
    assert json.loads((run / "frontier.json").read_text())["selected"] in ("fp32", "int8")

    triton = shipml("export", str(run), "--format", "triton", "-q", cwd=tmp_path)
    assert triton.returncode == 0, triton.stderr
    assert (run / "triton" / "digits" / "config.pbtxt").is_file()
    bad = shipml("export", str(tmp_path), cwd=tmp_path)
    assert bad.returncode == 2 and "not a shipml run directory" in bad.stderr
