"""measure(): sane numbers in process, in a subprocess and from the command line; and the runtime stays
torch-free: a fresh interpreter opens packages, predicts and measures without importing torch."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_runtime_package import image_package, table_package, text_package, text_prep

import shipml.runtime
from shipml.errors import ExportError
from shipml.runtime import measure, measure_in_subprocess, package_size
from shipml.runtime.timing import main

RUNTIME = Path(shipml.runtime.__file__).parent
FORBIDDEN = ("torch", "transformers", "accelerate", "sklearn", "shipml.tasks", "shipml.training", "shipml.run",
             "shipml.scorecard", "shipml.evaluate")


def _check(result: dict, pkg: Path, rows: int) -> None:
    assert 0 < result["p50_ms"] <= result["p99_ms"] and result["mean_ms"] > 0
    assert result["rows_per_s"] > 0 and result["peak_rss_mb"] > 0
    assert result["model_bytes"] == (pkg / "model.onnx").stat().st_size
    assert result["package_bytes"] == package_size(pkg) > result["model_bytes"]
    assert result["rows"] == rows and result["threads"] >= 1


def test_measure_returns_sane_numbers(tmp_path: Path) -> None:
    pkg, _ = table_package(tmp_path / "pkg")
    rows = pd.DataFrame({"x": np.arange(10.0), "y": 1.0, "colour": ["red", "blue"] * 5})
    rows.to_parquet(tmp_path / "rows.parquet")
    result = measure(pkg, tmp_path / "rows.parquet", latency_n=15, batch_size=4, warmup=2, threads=1)
    _check(result, pkg, 10)
    assert result["latency_n"] == 15 and result["batch_size"] == 4 and result["threads"] == 1
    assert result["variant"] == "fp32"


def test_measure_in_subprocess_and_cli(tmp_path: Path) -> None:
    pkg, _ = image_package(tmp_path / "pkg")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((9, 7, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"nope")  # skipped, not timed
    result = measure_in_subprocess(pkg, folder, latency_n=10, batch_size=2, warmup=1, threads=1, timeout=120)
    _check(result, pkg, 3)
    with pytest.raises(ExportError, match="not a shipml package"):
        measure_in_subprocess(tmp_path / "nothing", folder, latency_n=1)
    out = tmp_path / "r.json"
    assert main([str(tmp_path / "nothing"), str(folder), "--out", str(out)]) == 2 and not out.exists()
    assert main([str(pkg), str(folder), "--latency-n", "3", "--batch-size", "8", "--out", str(out)]) == 0
    _check(json.loads(out.read_text()), pkg, 3)


_SCRIPT = """
import json, sys
import shipml.runtime
from shipml.runtime import Package, measure
loaded_at_import = sorted(m for m in ("onnxruntime", "tokenizers") if m in sys.modules)
images, texts, npz, mails = sys.argv[1:5]
a = Package.open(images).predict(npz)
b = Package.open(texts).predict(mails)
m = measure(texts, mails, latency_n=5, batch_size=2, warmup=1)
print(json.dumps({"loaded_at_import": loaded_at_import, "rows": [len(a), len(b)], "p50": m["p50_ms"],
                  "modules": sorted(k for k in sys.modules if k.split(".")[0] in ("torch", "transformers", "sklearn",
                                    "accelerate") or k.split(".")[:2] in (["shipml", "tasks"], ["shipml", "training"],
                                                                          ["shipml", "run"]))}))
"""


def test_runtime_runs_without_torch(tmp_path: Path) -> None:
    images, _ = image_package(tmp_path / "img")
    texts, _ = text_package(tmp_path / "txt", text_prep(email={"headers": ["subject"], "body": True, "max_chars": 500}))
    np.savez(tmp_path / "x.npz", images=np.zeros((4, 6, 5, 3), np.uint8))
    (tmp_path / "mails").mkdir()
    for i in range(3):
        (tmp_path / "mails" / str(i)).write_bytes(f"Subject: hello {i}\n\nbody {'x ' * i}\n".encode())
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(images), str(texts), str(tmp_path / "x.npz"),
                           str(tmp_path / "mails")], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["modules"] == [], f"the runtime imported {got['modules']}"
    assert got["loaded_at_import"] == []  # onnxruntime and tokenizers load when first needed
    assert got["rows"] == [4, 3] and got["p50"] > 0


@pytest.mark.parametrize("path", sorted(RUNTIME.glob("*.py")), ids=lambda p: p.name)
def test_runtime_source_imports_nothing_forbidden(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        for name in names:
            assert not any(name == f or name.startswith(f + ".") for f in FORBIDDEN), f"{path.name} imports {name}"
