"""The compression frontier of the spam MiniLM and the MNIST CNN, against the targets of the compression issue.

    python bench/compress.py                          # both cases (trains what it needs)
    python bench/compress.py --only mnist
    python bench/compress.py --only spam --run DIR    # reuse a finished spam run (its data path must exist)

spam   examples/spam.yaml (all-MiniLM-L6-v2, max length 256) on ../shared/data/spamassassin; variants int8
       (dynamic), fp16, prune (30% of heads and FFN neurons + 1 recovery epoch), prune+int8, distill (3-layer
       student from alternate teacher layers), distill+int8. Targets: int8 >= 2.5x the throughput of eager fp32
       PyTorch at batch 32 with accuracy within 0.3 points and a package <= 30% of fp32; distilled student
       >= 1.8x its teacher at equal precision, accuracy within 0.5 points; pruned measurably faster, accuracy
       within 0.5 points.
mnist  examples/mnist.yaml on ../shared/data/mnist5k.tar.gz; variants int8 (static, calibrated), fp16, prune,
       distill, distill+int8. Target: static int8 >= 1.5x the fp32 ONNX throughput at batch 32, accuracy within
       0.3 points.

Every package is measured by `shipml compress` itself (one fresh torch-free process per package: batch-1
latency over 200 test rows end to end, throughput over the test split in batches of 32, package size, peak
RSS). Eager PyTorch is measured here on the same batches for the "x eager" column. Run it alone: a second
busy process on a 2-core machine distorts every figure.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

import shipml
from shipml.compress import compress_run
from shipml.config import load_config
from shipml.data import fetch_dataset
from shipml.export import load_context

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


@torch.no_grad()
def eager_rows_per_s(run: shipml.Run, batch_size: int, precision: str = "fp32", repeats: int = 2) -> float:
    """Eager PyTorch throughput on consecutive test rows in batches, the same batches the runtime times."""
    ctx = load_context(run)
    task, model = run.task, run.model.float().eval()
    torch.set_num_threads(os.cpu_count() or 1)
    inputs = task.encode_dataset(ctx.data)
    idx = ctx.test_idx
    batches = [torch.as_tensor(idx[s : s + batch_size]) for s in range(0, len(idx), batch_size)]
    gen = torch.Generator()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        model(**task.make_batch(inputs, batches[0], train=False, gen=gen))  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeats):
            for b in batches:
                model(**task.make_batch(inputs, b, train=False, gen=gen))
    return repeats * len(idx) / (time.perf_counter() - t0)


def frontier_table(title: str, rows: list[dict[str, Any]], eager: dict[str, float]) -> Table:
    table = Table(title=title)
    for col in ("variant", "accuracy [95% CI]", "drop (points)", "p50 ms", "p99 ms", "rows/s @32", "x eager fp32",
                "x fp32 ONNX", "package MB", "size x fp32", "peak MB"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for name, rate in eager.items():
        table.add_row(f"PyTorch eager {name}", "", "", "", "", f"{rate:.1f}", f"{rate / eager['fp32']:.2f}", "", "",
                      "", "")
    for r in rows:
        table.add_row(r["name"], f"{r['accuracy']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]",
                      f"{100 * r['accuracy_drop']:+.2f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                      f"{r['rows_per_s']:.1f}", f"{r['rows_per_s'] / eager['fp32']:.2f}",
                      f"{r['speedup_throughput']:.2f}", f"{r['package_mb']:.1f}", f"{r['size_ratio']:.2f}",
                      f"{r['peak_mb']:.0f}")
    return table


def verdicts(case: str, rows: list[dict[str, Any]], eager: dict[str, float]) -> list[str]:
    by = {r["name"]: r for r in rows}
    out = []

    def line(what: str, ok: bool, detail: str) -> None:
        out.append(f"{case}: {what}: {'MET' if ok else 'NOT MET'} ({detail})")

    if case == "spam":
        q = by["int8"]
        x = q["rows_per_s"] / eager["fp32"]
        line("int8 >= 2.5x eager fp32 throughput at batch 32", x >= 2.5, f"{x:.2f}x")
        line("int8 accuracy within 0.3 points", q["accuracy_drop"] <= 0.003, f"{100 * q['accuracy_drop']:+.2f} points")
        line("int8 package <= 30% of fp32", q["size_ratio"] <= 0.30, f"{q['size_ratio']:.1%}")
        d = by["distill"]
        line("distilled >= 1.8x its teacher at equal precision (fp32 ONNX)", d["speedup_throughput"] >= 1.8,
             f"{d['speedup_throughput']:.2f}x throughput, {d['speedup_p50']:.2f}x p50")
        if "distill+int8" in by:
            dq = by["distill+int8"]["rows_per_s"] / q["rows_per_s"]
            out.append(f"spam: distill+int8 vs int8 (equal precision, int8): {dq:.2f}x throughput; vs eager fp32: "
                       f"{by['distill+int8']['rows_per_s'] / eager['fp32']:.2f}x")
        line("distilled accuracy within 0.5 points", d["accuracy_drop"] <= 0.005, f"{100 * d['accuracy_drop']:+.2f}")
        p = by["prune"]
        line("pruned measurably faster", p["speedup_throughput"] > 1.05,
             f"{p['speedup_throughput']:.2f}x throughput, {p['speedup_p50']:.2f}x p50")
        line("pruned accuracy within 0.5 points", p["accuracy_drop"] <= 0.005, f"{100 * p['accuracy_drop']:+.2f}")
    else:
        q = by["int8"]
        line("static int8 >= 1.5x fp32 ONNX throughput at batch 32", q["speedup_throughput"] >= 1.5,
             f"{q['speedup_throughput']:.2f}x")
        line("static int8 accuracy within 0.3 points", q["accuracy_drop"] <= 0.003,
             f"{100 * q['accuracy_drop']:+.2f} points")
    return out


def spam_run(tmp: Path, given: Path | None) -> shipml.Run:
    if given is not None:
        return shipml.Run(given)
    data = tmp / "spam"
    fetch_dataset("spamassassin", data, from_dir=SHARED / "spamassassin")
    cfg = load_config(ROOT / "examples" / "spam.yaml")
    return shipml.train(cfg, overrides=[f"data.path={data}", f"output_dir={tmp / 'runs'}"], quiet=True)


def mnist_run(tmp: Path, given: Path | None) -> shipml.Run:
    if given is not None:
        return shipml.Run(given)
    cfg = load_config(ROOT / "examples" / "mnist.yaml")
    return shipml.train(cfg, overrides=[f"data.path={SHARED / 'mnist5k.tar.gz'}", f"output_dir={tmp / 'runs'}"],
                        quiet=True)


CASES = {
    "spam": (spam_run, "int8,fp16,prune,prune+int8,distill,distill+int8", ["fp32", "bf16"]),
    "mnist": (mnist_run, "int8,fp16,prune,prune+int8,distill,distill+int8", ["fp32"]),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=sorted(CASES), action="append")
    ap.add_argument("--run", type=Path, default=None, help="a finished run to compress instead of training one")
    ap.add_argument("--set", action="append", default=[], help="config overrides, e.g. compress.distill.epochs=2")
    args = ap.parse_args()
    cases = args.only or sorted(CASES, reverse=True)
    if args.run is not None and len(cases) != 1:
        ap.error("--run goes with one --only case")
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as d:
        for case in cases:
            make, methods, precisions = CASES[case]
            run = make(Path(d) / case, args.run)
            t0 = time.perf_counter()
            result = compress_run(run, methods=methods, overrides=args.set, quiet=True)
            build = time.perf_counter() - t0
            eager = {p: eager_rows_per_s(run, 32, p) for p in precisions}
            cpu = result.rows[0].get("threads")
            title = (f"{case}: {run.id}, test split {load_context(run).test_idx.size} rows, {os.cpu_count()} cores, "
                     f"{cpu} threads; compress + measure took {build / 60:.1f} min")
            Console(width=200).print(frontier_table(title, result.rows, eager))
            notes += verdicts(case, result.rows, eager)
            notes.append(f"{case}: frontier.json at {result.path} (temporary unless --run)")
    for n in notes:
        print(n)


if __name__ == "__main__":
    main()
