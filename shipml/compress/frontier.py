"""The frontier: every package of a run (the fp32 export and each variant) measured the same way.

Quality comes from each package's metrics.json (its own test-split predictions, with CIs); speed and
memory from `shipml.runtime.measure` run in a fresh process per package (so peak memory is that
package's alone, and torch is never loaded): batch-1 latency percentiles, throughput at a batch size,
size on disk. Written to `runs/<id>/frontier.json`, shown as a table and in the run report.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipml.core.files import atomic_write_bytes
from shipml.core.machine import cpu_name
from shipml.export import ExportContext
from shipml.runtime import Package, measure_in_subprocess

__all__ = ["FRONTIER", "frontier_row", "print_frontier", "write_inputs"]

FRONTIER = "frontier.json"
_MB = 1024 * 1024


def write_inputs(ctx: ExportContext, folder: Path) -> Path:
    """The test split as a file `shipml.runtime.measure` reads: .npz of uint8 images, or a parquet table."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = ctx.raw(ctx.test_idx)
    if isinstance(raw, np.ndarray):
        path = folder / "test-inputs.npz"
        np.savez(path, images=raw)
    else:
        path = folder / "test-inputs.parquet"
        pd.DataFrame(raw).to_parquet(path, index=False)
    return path


def _quality(pkg: Package, headline: str) -> dict[str, Any]:
    test = pkg.metrics.get("test", {})
    out: dict[str, Any] = {}
    for k, v in test.items():
        if isinstance(v, dict) and "value" in v and v["value"] is not None:
            out[k] = float(v["value"])
    h = test.get(headline, {})
    out["ci_low"], out["ci_high"] = h.get("ci_low"), h.get("ci_high")
    out["ci_method"] = h.get("ci_method") or ("bootstrap" if h.get("ci_low") is not None else None)
    return out


def frontier_row(pkg: Package, inputs: Path, headline: str, *, latency_n: int, batch_size: int,
                 threads: int | None = None) -> dict[str, Any]:
    """One package measured: quality metrics, p50/p99/mean latency at batch 1, rows/s at `batch_size`, sizes,
    peak memory of the serving process."""
    m = measure_in_subprocess(pkg.path, inputs, latency_n=latency_n, batch_size=batch_size, threads=threads,
                              timeout=1800)  # a hung measurement must not hang `shipml compress`
    variant = pkg.signature["variant"]
    row = {"name": variant["name"], "method": variant.get("method"), "path": str(pkg.path.resolve())}
    row |= _quality(pkg, headline)
    row |= {"p50_ms": m["p50_ms"], "p99_ms": m["p99_ms"], "mean_ms": m["mean_ms"], "rows_per_s": m["rows_per_s"],
            "model_mb": m["model_bytes"] / _MB, "package_mb": m["package_bytes"] / _MB, "peak_mb": m["peak_rss_mb"],
            "batch_size": batch_size, "latency_requests": latency_n, "threads": m.get("threads")}
    parity = pkg.metrics.get("parity") or {}
    row["parity_max_abs_diff"], row["parity_agreement"] = parity.get("max_abs_diff"), parity.get("agreement")
    return row


def add_relative(rows: list[dict[str, Any]], quality: set[str], lower_is_better: set[str]) -> None:
    """`<metric>_drop` against the first row (the fp32 package), and speed-ups against it."""
    base = rows[0]
    for r in rows:
        for k in quality:
            if r.get(k) is not None and base.get(k) is not None:
                r[f"{k}_drop"] = (r[k] - base[k]) if k in lower_is_better else (base[k] - r[k])
        r["speedup_p50"] = base["p50_ms"] / r["p50_ms"] if r["p50_ms"] else None
        r["speedup_throughput"] = r["rows_per_s"] / base["rows_per_s"] if base["rows_per_s"] else None
        r["size_ratio"] = r["package_mb"] / base["package_mb"] if base["package_mb"] else None


def save_frontier(run_path: Path, headline: str, rows: list[dict[str, Any]], target: str | None,
                  selected: str | None, message: str | None) -> Path:
    doc = {"headline": headline, "rows": rows, "target": target, "selected": selected, "message": message,
           "measured": {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cores": os.cpu_count(),
                        "cpu": cpu_name()}}
    path = run_path / FRONTIER
    atomic_write_bytes(path, (json.dumps(doc, indent=2) + "\n").encode())
    return path


def print_frontier(rows: list[dict[str, Any]], headline: str, selected: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"frontier: test {headline}, latency at batch 1, rows/s at batch {rows[0]['batch_size']}")
    for col in ("variant", headline, "95% CI", "p50 ms", "p99 ms", "rows/s", "speed", "MB", "peak MB"):
        table.add_column(col, justify="left" if col == "variant" else "right", no_wrap=True)
    for r in rows:
        ci = "" if r.get("ci_low") is None else f"{r['ci_low']:.3f}-{r['ci_high']:.3f}"
        drop = r.get(f"{headline}_drop") or 0.0
        value = f"{r.get(headline, float('nan')):.4f}" + (f" ({-drop:+.4f})" if r is not rows[0] else "")
        name = f"[bold]{r['name']} *[/bold]" if r["name"] == selected else r["name"]
        table.add_row(name, value, ci, f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['rows_per_s']:.0f}",
                      f"{r['speedup_throughput']:.2f}x", f"{r['package_mb']:.1f}", f"{r['peak_mb']:.0f}")
    console = Console(stderr=True)
    console.width = max(console.width, 110)  # the table is ~110 columns; a narrower one would wrap every cell
    console.print(table)
