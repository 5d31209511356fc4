"""`shipml quickstart`: the whole main job on an embedded data set, with no network and no ../shared.

scikit-learn's bundled 8x8 digits are written out as an ordinary image folder (`<class>/<i>.png`),
so the quick start exercises exactly the path a user's own images take: train, evaluate, report, then
export the model as a package and compress it (int8, pruning, distillation), printing the frontier.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shipml._console import Reporter
from shipml.compress import compress_run
from shipml.run import Run, train

__all__ = ["QUICKSTART_CONFIG", "QUICKSTART_METHODS", "run_quickstart", "write_digits"]

# Measured with bench/quickstart.py (see docs/quickstart numbers in README): tuned for 8x8 digits.
QUICKSTART_METHODS = "int8,prune,distill,distill+int8"
QUICKSTART_CONFIG: dict[str, Any] = {
    "name": "digits",
    "seed": 0,
    "task": {"name": "image-classification", "augment": {"shift": 0.1, "rotation": 10.0, "crop": 1.0}},
    "model": {"arch": "cnn", "width": 32, "depth": 2, "blocks": 2, "dropout": 0.3},
    "train": {"epochs": 40, "batch_size": 32, "lr": 3e-3, "weight_decay": 1e-4, "schedule": "cosine",
              "warmup_steps": 50, "early_stopping": {"patience": 15}},
}


def write_digits(folder: Path) -> Path:
    """Write sklearn's digits as `folder/<digit>/<index>.png` (once; atomic) and return the folder."""
    if folder.is_dir() and any(folder.iterdir()):
        return folder
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".digits-", dir=folder.parent))
    try:
        pixels = np.clip(digits.images * (255 / 16), 0, 255).round().astype(np.uint8)  # (N, 8, 8)
        for i, (img, label) in enumerate(zip(pixels, digits.target, strict=True)):
            d = tmp / str(label)
            d.mkdir(exist_ok=True)
            Image.fromarray(img, mode="L").save(d / f"{i:04d}.png")
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def run_quickstart(workdir: Path, *, quiet: bool = False, compress: bool = True) -> Run:
    reporter = Reporter(quiet=quiet)
    data = write_digits(workdir / "data" / "digits")
    cfg = {**QUICKSTART_CONFIG, "output_dir": str(workdir / "runs"), "data": {"path": str(data)}}
    run = train(cfg, quiet=quiet)
    if compress:  # export (fp32 package, parity-checked), then int8 / prune / distill variants and the frontier
        compress_run(run, methods=QUICKSTART_METHODS, quiet=quiet)
        run.report()  # now with the frontier
    m = run.metrics
    acc = m["test"]["accuracy"]
    lines = [
        "",
        f"[bold green]done[/bold green]: test accuracy {acc['value']:.4f} "
        f"({run.config.evaluate.confidence:.0%} CI {acc['ci_low']:.4f}-{acc['ci_high']:.4f}, "
        f"{acc.get('ci_method') or 'bootstrap'})",
    ]
    if "baseline" in m:
        b = m["baseline"]["test"]["accuracy"]["value"]
        lines.append(f"  baseline ({m['baseline']['name']}): {b:.4f}")
    lines += [
        f"  data         {data}",
        f"  run          {run.path}",
        f"  report       {run.path / 'report.html'}",
        f"  metrics      {run.path / 'metrics.json'}",
        f"  model        {run.path / 'model'}",
    ]
    if compress:
        lines += [f"  package      {run.path / 'package'}   (ONNX; variants in {run.path / 'variants'})",
                  f"  frontier     {run.path / 'frontier.json'}"]
    lines += [
        "next:",
        f"  shipml predict {run.path / 'package'} {data / '3'}",
        f"  shipml compress {run.path} --target \"p99_ms<=1, accuracy_drop<=0.01\"",
        "  shipml init --data your/data > shipml.yaml && shipml train shipml.yaml",
    ]
    for line in lines:
        reporter.info(line)
    return run
