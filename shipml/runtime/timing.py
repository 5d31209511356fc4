"""Latency, throughput, size and peak memory of one package, meant to run in a process of its own.

Peak RSS is a per-process high-water mark, so comparing compressed variants fairly needs one fresh
process per package: `measure_in_subprocess` spawns `python -m shipml.runtime.measure_main`, which imports
only the runtime (never torch), measures, and writes the result as JSON.

    python -m shipml.runtime.measure_main PACKAGE RAW [--latency-n N] [--batch-size B] [--threads T] --out result.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from shipml.errors import ExportError, ShipmlError
from shipml.runtime.format import MODEL, package_size
from shipml.runtime.package import Package

__all__ = ["main", "measure", "measure_in_subprocess"]


def _peak_rss_mb() -> float:
    """Peak resident memory of this process. Linux's ru_maxrss survives execve, so a child started from a
    big parent (one with torch loaded) would report the parent's peak; VmHWM belongs to this process image."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def measure(package_dir: Path, raw: str | Path, *, latency_n: int = 200, batch_size: int = 32, warmup: int = 5,
            threads: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Measure one package on real inputs (a file or folder the package's preprocessing accepts).

    Latency is end to end per request (preprocess one raw row, one session call at batch 1), over
    `latency_n` rows drawn with a seeded rng; throughput runs consecutive batches of prepared rows, timing
    only the batching and the session, so it measures the network rather than file decoding.
    """
    pkg = Package.open(package_dir, threads=threads)
    pre = pkg.preprocessor
    prepared = pkg.prepare(raw)
    skipped = {item for item, _ in prepared.skipped}  # unreadable files: not requests one can time
    items = [it for it in pre.split(raw) if not (isinstance(it, list) and str(it[0]) in skipped)]
    n = len(prepared)
    if not n or not items:
        raise ExportError(f"{raw} holds no rows to measure with")
    pkg.session()  # session creation is a one-off cost, not latency

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items))
    for i in range(warmup):
        pkg.outputs(pkg.prepare(items[order[i % len(items)]]), batch_size=1)
    times = np.empty(max(1, latency_n), dtype=np.float64)
    for i in range(len(times)):
        item = items[order[i % len(items)]]
        t0 = time.perf_counter()
        pkg.outputs(pkg.prepare(item), batch_size=1)
        times[i] = time.perf_counter() - t0
    times_ms = times * 1000

    batch_size = max(1, int(batch_size))
    n_batches = max(3, -(-n // batch_size))
    rows = np.arange(n_batches * batch_size) % n  # consecutive rows, cycling when there are few
    pkg.run(pre.feeds(prepared, rows[:batch_size]))  # warm the batch shape
    elapsed = 0.0
    for b in range(n_batches):
        batch = rows[b * batch_size : (b + 1) * batch_size]
        t0 = time.perf_counter()
        pkg.run(pre.feeds(prepared, batch))
        elapsed += time.perf_counter() - t0

    return {
        "package": str(Path(package_dir)),
        "variant": pkg.variant,
        "p50_ms": float(np.percentile(times_ms, 50)),
        "p99_ms": float(np.percentile(times_ms, 99)),
        "mean_ms": float(times_ms.mean()),
        "latency_n": len(times),
        "rows_per_s": float(len(rows) / elapsed) if elapsed > 0 else float("inf"),
        "batch_size": batch_size,
        "model_bytes": (Path(package_dir) / MODEL).stat().st_size,
        "package_bytes": package_size(Path(package_dir)),
        "peak_rss_mb": _peak_rss_mb(),
        "rows": n,
        "threads": pkg.threads,
    }


def measure_in_subprocess(package_dir: Path, raw: str | Path, *, latency_n: int = 200, batch_size: int = 32,
                          warmup: int = 5, threads: int | None = None, seed: int = 0,
                          timeout: float | None = None) -> dict[str, Any]:
    """`measure` in a fresh Python process, so peak memory belongs to this package alone."""
    with tempfile.TemporaryDirectory(prefix="shipml-measure-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "shipml.runtime.measure_main", str(package_dir), str(raw),
               "--latency-n", str(latency_n), "--batch-size", str(batch_size), "--warmup", str(warmup),
               "--seed", str(seed), "--out", str(out)]
        if threads is not None:
            cmd += ["--threads", str(threads)]
        root = str(Path(__file__).resolve().parents[2])  # the folder holding `shipml`, for uninstalled checkouts
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ExportError(f"measuring {package_dir} took longer than {timeout} s; lower --latency-n") from None
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout).strip()[-2000:]
            raise ExportError(f"measuring {package_dir} failed (exit {proc.returncode}): {tail}")
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    """Command line: measure one package, write the JSON; a ShipmlError is one line on stderr, exit 2."""
    ap = argparse.ArgumentParser(prog="python -m shipml.runtime.measure_main", description=__doc__.split("\n\n")[0])
    ap.add_argument("package", type=Path)
    ap.add_argument("raw", help="inputs: .npz images, an image folder, a table file, a folder of emails, ...")
    ap.add_argument("--latency-n", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        result = measure(args.package, args.raw, latency_n=args.latency_n, batch_size=args.batch_size,
                         warmup=args.warmup, threads=args.threads, seed=args.seed)
    except ShipmlError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    tmp = args.out.with_name(f".{args.out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.out)
    return 0

