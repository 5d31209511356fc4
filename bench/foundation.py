"""The foundation's numbers: accuracy and training time of the shipped configs, against their baselines.

    python bench/foundation.py                 # all cases, seed 0 (tables: seeds 0-4)
    python bench/foundation.py --only mnist    # one case

Cases (targets from the foundation issue):
  mnist       examples/mnist.yaml (what `shipml init` writes), ../shared/data/mnist5k.tar.gz, 80/10/10:
              test accuracy >= 98.0%, training <= 5 minutes on 2 cores
  quickstart  `shipml quickstart`'s config on sklearn digits: test accuracy >= 98%, whole job < 3 minutes
  cancer      examples/breast_cancer.yaml: test accuracy >= 97%
  diabetes    examples/diabetes.yaml: test R^2 >= the ridge baseline's
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

import shipml
from shipml.config import load_config
from shipml.quickstart import run_quickstart

ROOT = Path(__file__).resolve().parents[1]


def _ci(m: dict[str, Any]) -> str:
    if m.get("ci_low") is None:
        return ""
    return f"[{m['ci_low']:.4f}, {m['ci_high']:.4f}]"


def _case(name: str, cfg_path: Path, seeds: list[int], tmp: Path, table: Table, overrides: list[str]) -> None:
    cfg = load_config(cfg_path)
    head = "r2" if cfg.task.name.endswith("regression") else "accuracy"
    for seed in seeds:
        t0 = time.perf_counter()
        run = shipml.train(cfg, overrides=[f"seed={seed}", f"output_dir={tmp}", *overrides], quiet=True)
        wall = time.perf_counter() - t0
        m, info = run.metrics, run.info
        base = m["baseline"]["test"][head]["value"]
        model = m["test"][head]
        table.add_row(name, str(seed), head, f"{model['value']:.4f}", _ci(model), f"{base:.4f}",
                      f"{m['baseline']['name']}", f"{info['train_seconds']:.1f}", f"{wall:.1f}",
                      info["environment"]["precision"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["mnist", "quickstart", "cancer", "diabetes"], action="append")
    ap.add_argument("--seeds", type=int, default=5, help="seeds for the small table cases")
    args = ap.parse_args()
    cases = args.only or ["mnist", "quickstart", "cancer", "diabetes"]
    cpu = platform.processor() or platform.machine()
    table = Table(title=f"shipml foundation bench — {os.cpu_count()} cores, torch {torch.__version__}, {cpu}")
    for col in ("case", "seed", "metric", "test", "95% CI", "baseline", "baseline model", "train s", "wall s",
                "precision"):
        table.add_column(col)
    seeds = list(range(args.seeds))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "mnist" in cases:
            _case("mnist5k", ROOT / "examples" / "mnist.yaml", [0], tmp, table, [])
        if "quickstart" in cases:
            t0 = time.perf_counter()
            run = run_quickstart(tmp / "qs", quiet=True)
            wall = time.perf_counter() - t0
            m = run.metrics
            table.add_row("quickstart (digits)", "0", "accuracy", f"{m['test']['accuracy']['value']:.4f}",
                          _ci(m["test"]["accuracy"]), f"{m['baseline']['test']['accuracy']['value']:.4f}",
                          m["baseline"]["name"], f"{run.info['train_seconds']:.1f}", f"{wall:.1f} (whole job)",
                          run.info["environment"]["precision"])
        if "cancer" in cases:
            _case("breast cancer", ROOT / "examples" / "breast_cancer.yaml", seeds, tmp, table, [])
        if "diabetes" in cases:
            _case("diabetes", ROOT / "examples" / "diabetes.yaml", seeds, tmp, table, [])
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
