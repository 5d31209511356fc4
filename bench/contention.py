"""shipml on a busy CPU: the quick start and the spam recipe's training throughput beside 0, 1 and 2 busy processes.

    python bench/contention.py [--busy 0,1,2] [--emails 160] [--source DIR ...] [--json out.json]

Each busy process is a single-threaded Python spin loop (what a browser tab, an IDE's indexer or a second
training looks like to the scheduler), started a second before the measured command and killed after it.
Measured, each in a fresh process:

  quickstart  `shipml quickstart` end to end (train, evaluate, report, export, int8/prune/distill, frontier):
              wall seconds, and the training seconds and samples/s its run.json records
  spam        the spam recipe (examples/spam.yaml: all-MiniLM-L6-v2, max length 256, head+tail, batch 16) for one
              epoch on the first --emails messages of each label of SpamAssassin (../shared/data): samples/s

`--source DIR` (repeatable) runs the same cases with another checkout's code first on PYTHONPATH (e.g. a
`git worktree` of an earlier commit), so the old and the new thread choice are measured in one run, on one
machine. Ratios are each row's time over the idle row of the same source. Run it with nothing else running.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
SPIN = "while True: pass"


def _env(source: Path) -> dict[str, str]:
    """`python -m` puts the working directory first on sys.path: the command runs in `source` too (see callers)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(source) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _run_json(runs: Path) -> dict[str, Any]:
    run = next(p for p in runs.iterdir() if (p / "run.json").is_file())
    return json.loads((run / "run.json").read_text())


def _quickstart(source: Path, work: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "shipml.cli", "quickstart", "--workdir", str(work), "-q"],
                   env=_env(source), cwd=source, check=True, capture_output=True, timeout=1800)
    wall = time.perf_counter() - t0
    info = _run_json(work / "runs")
    return {"wall_s": round(wall, 1), "train_s": info["train_seconds"], "samples_per_s": info["samples_per_s"],
            "threads": info["environment"]["threads"]}


def _spam_subset(emails: int, out: Path) -> Path:
    """The first `emails` messages (name order, over the parts) of each label, fetched from ../shared/data."""
    from shipml.data import fetch_dataset

    full = out / "full"
    fetch_dataset("spamassassin", full, from_dir=ROOT.parent / "shared" / "data" / "spamassassin")
    subset = out / "subset"
    for label in ("ham", "spam"):
        files = sorted(p for p in (full / label).rglob("*") if p.is_file())[:emails]
        (subset / label).mkdir(parents=True)
        for f in files:
            shutil.copyfile(f, subset / label / f"{f.parent.name}-{f.name}")
    return subset


def _spam(source: Path, data: Path, work: Path) -> dict[str, Any]:
    sets = [f"data.path={data}", f"output_dir={work}", "train.epochs=1", "evaluate.bootstrap=0",
            "train.warmup_steps=2"]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "shipml.cli", "train", str(ROOT / "examples" / "spam.yaml"), "--quiet",
                    *[a for s in sets for a in ("--set", s)]], env=_env(source), cwd=source, check=True,
                   capture_output=True, timeout=1800)
    info = _run_json(work)
    return {"wall_s": round(time.perf_counter() - t0, 1), "train_s": info["train_seconds"],
            "samples_per_s": info["samples_per_s"], "threads": info["environment"]["threads"]}


def _with_busy(n: int, fn: Any) -> dict[str, Any]:
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(n)]
    try:
        time.sleep(1.0 if n else 0.0)
        return fn()
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--busy", default="0,1,2", help="numbers of busy processes, comma-separated")
    ap.add_argument("--emails", type=int, default=160, help="messages per label for the spam case (0: skip it)")
    ap.add_argument("--only", choices=["quickstart", "spam"], default=None)
    ap.add_argument("--source", action="append", type=Path, default=None,
                    help="checkout(s) whose code is measured (default: this one)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from shipml.core.machine import cpu_kind, cpu_name

    levels = [int(b) for b in args.busy.split(",")]
    sources = [s.resolve() for s in (args.source or [ROOT])]
    console = Console(width=200)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        spam_data = _spam_subset(args.emails, tmp / "spam") if args.emails and args.only != "quickstart" else None
        for source in sources:
            for busy in levels:
                if args.only in (None, "quickstart"):
                    r = _with_busy(busy, lambda s=source, b=busy: _quickstart(s, tmp / f"qs-{s.name}-{b}"))
                    results.append({"case": "quickstart", "source": str(source), "busy": busy, **r})
                    console.print(results[-1])
                if spam_data is not None:
                    r = _with_busy(busy, lambda s=source, b=busy: _spam(s, spam_data, tmp / f"spam-{s.name}-{b}"))
                    results.append({"case": "spam", "source": str(source), "busy": busy, **r})
                    console.print(results[-1])
    table = Table(title=f"shipml on a busy CPU: {cpu_name()} ({cpu_kind()}), {os.cpu_count()} cores")
    for col in ("case", "code", "busy processes", "threads", "wall s", "train s", "samples/s", "x idle time"):
        table.add_column(col, justify="left" if col in ("case", "code") else "right")
    for r in results:
        idle = next((x for x in results if x["case"] == r["case"] and x["source"] == r["source"] and x["busy"] == 0),
                    None)
        key = "wall_s" if r["case"] == "quickstart" else "train_s"
        ratio = f"{r[key] / idle[key]:.2f}" if idle else ""
        table.add_row(r["case"], Path(r["source"]).name, str(r["busy"]), str(r["threads"]), f"{r['wall_s']:.1f}",
                      f"{r['train_s']:.1f}", f"{r['samples_per_s']:.1f}", ratio)
    console.print(table)
    console.print("x idle time: quickstart wall seconds, spam training seconds, over the same code's idle row")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "cpu_kind": cpu_kind(), "rows": results}, indent=1))


if __name__ == "__main__":
    main()
