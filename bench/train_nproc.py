"""One process against several: the MNIST CNN (`examples/mnist.yaml`) trained by `shipml train` alone and with
`--nproc N` (gloo on CPU), same config and seed, same global batch. Prints, per run: training samples/s,
training and wall time (the wall time includes starting the processes, loading data, evaluating, the
report), the test accuracy with its 95% interval, and the load average of the machine before and during the
run (a run's own processes add about 1-2 to it; other work on the box slows every figure: compare rows
measured at a similar load).

    python bench/train_nproc.py [--data ../shared/data/mnist5k.tar.gz] [--nproc 1 2] [--seeds 0] [--set k=v ...]

On a 2-core box expect little gain from 2 processes: each gets one core instead of two threads, and the
gradient all-reduce and the rank-0-only validation add a little; the point is the path, and equal accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"


def _train(nproc: int, seed: int, data: str, extra: list[str], workdir: Path) -> dict[str, object]:
    sets = [f"data.path={data}", f"seed={seed}", f"output_dir={workdir}", "evaluate.bootstrap=0", *extra]
    cmd = [sys.executable, "-m", "shipml", "train", str(ROOT / "examples" / "mnist.yaml"), "--quiet",
           *[a for s in sets for a in ("--set", s)], *(["--nproc", str(nproc)] if nproc > 1 else [])]
    load, during = _load(), []
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=ROOT,
                                env=os.environ | {"PYTHONHASHSEED": "0"})
        while proc.poll() is None:  # the 1-minute load while it trains (this run's own processes included)
            time.sleep(2)
            during.append(float(_load().split()[0]) if _load() != "n/a" else float("nan"))
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{stderr[-3000:]}")
    run = Path(stdout.strip().splitlines()[-1])
    info = json.loads((run / "run.json").read_text())
    acc = json.loads((run / "metrics.json").read_text())["test"]["accuracy"]
    return {"nproc": nproc, "seed": seed, "samples_per_s": info["samples_per_s"], "train_s": info["train_seconds"],
            "wall_s": wall, "acc": acc, "load": load, "load_during": max(during, default=float("nan")),
            "precision": info["environment"]["precision"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist5k.tar.gz"))
    ap.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra --set for every run")
    args = ap.parse_args()
    console = Console(width=200)
    rows = []
    with tempfile.TemporaryDirectory(prefix="shipml-nproc-") as tmp:
        for seed in args.seeds:
            for n in args.nproc:
                console.print(f"training: {n} process(es), seed {seed} (load {_load()})")
                rows.append(_train(n, seed, str(Path(args.data).resolve()), args.sets, Path(tmp)))
    table = Table(title=f"MNIST 5k CNN (examples/mnist.yaml), 1 vs N processes on {os.cpu_count()} cores")
    for col in ("processes", "seed", "samples/s", "train s", "wall s", "test accuracy [95% CI]", "precision",
                "load before (1/5/15 min)", "max 1-min load during"):
        table.add_column(col, justify="right")
    for r in rows:
        acc = r["acc"]
        assert isinstance(acc, dict)
        table.add_row(str(r["nproc"]), str(r["seed"]), f"{r['samples_per_s']:.0f}", f"{r['train_s']:.1f}",
                      f"{r['wall_s']:.1f}", f"{acc['value']:.4f} [{acc['ci_low']:.4f}, {acc['ci_high']:.4f}]",
                      str(r["precision"]), str(r["load"]), f"{r['load_during']:.2f}")
    console.print(table)
    console.print(f"load after: {_load()}")


if __name__ == "__main__":
    main()
