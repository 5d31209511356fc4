"""Release gates on real models, and the wall time of `shipml release` on the spam MiniLM (issue 9).

    python bench/registry.py                          # both cases (trains what it needs, cached under --work)
    python bench/registry.py --only mnist
    python bench/registry.py --only spam --attempts 3 --work /tmp/bench-registry

mnist  examples/mnist.yaml on ../shared/data/mnist5k.tar.gz (500-image test split = the frozen holdout). Four
       model names, each with a production v1 released first and a candidate v2 released against it with the
       default gates (headline >= production - 0.005, paired McNemar mid-p at alpha 0.05, signature):
         worse-1epoch   production = the full 15-epoch CNN, candidate = the same recipe trained 1 epoch: BLOCKED
         worse-pruned   candidate = the full CNN with 70% of channels pruned and no recovery epoch: BLOCKED
         same           candidate = the same run exported again to a new folder (its provenance records a new
                        export time, so a new digest and a new version, with identical predictions): PASSES, p = 1
         better         production = the 1-epoch model, candidate = the full one: released, REPORTED better
spam   examples/spam.yaml (all-MiniLM-L6-v2, max length 256, head+tail) trained for --spam-epochs (default 1)
       on ../shared/data/spamassassin; its fp32 package is `spam` v1, released first (this freezes the 594-row
       test split as the holdout and caches v1's outputs on it); its int8 package is v2. The timed command is
       the real CLI, `shipml release spam 2 --registry ...`, in a subprocess, on a fresh copy of that registry
       per attempt. Target: under 30 s on the 2-core machine. The same release is then re-done in-process on
       another copy, step by step, to show where the time goes (and what a `p99_ms` gate would add).

Trained runs, packages and variants are cached under --work, so a re-run only re-does the registry steps. The
registries are made afresh under --work on every run (never ~/.shipml). Timing needs a quiet machine: before
each timed release the script waits (up to --max-wait s) until other processes use under --busy cores, prints
/proc/loadavg and the busiest processes, and measures the CPU others used while the release ran.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

import shipml
from shipml.compress import compress_run
from shipml.config import load_config
from shipml.data import fetch_dataset
from shipml.errors import RegistryError
from shipml.export import export_run
from shipml.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CONSOLE = Console(width=220)
PRUNE = ["compress.prune.ratio=0.7", "compress.prune.recovery_epochs=0"]


# ------------------------------------------------------------------------------------------ cached work
def cached_run(work: Path, key: str, config: str, overrides: list[str]) -> shipml.Run:
    """A finished run under work/runs/<key>/, trained now only if none is there yet."""
    out = work / "runs" / key
    done = sorted(p.parent for p in out.glob("*/metrics.json") if (p.parent / "model").is_dir())
    if done:
        return shipml.Run(done[-1])
    t0 = time.perf_counter()
    run = shipml.train(load_config(ROOT / "examples" / config), overrides=[*overrides, f"output_dir={out}"],
                       quiet=True)
    print(f"trained {key}: {run.path} in {time.perf_counter() - t0:.0f} s")
    return run


def package(run: shipml.Run) -> Path:
    if not (run.path / "package" / "signature.json").is_file():
        export_run(run, quiet=True)
    return run.path / "package"


def variant(run: shipml.Run, name: str, overrides: list[str] | None = None) -> Path:
    folder = run.path / "variants" / name
    if not (folder / "signature.json").is_file():
        package(run)
        compress_run(run, methods=name, overrides=overrides or [], measure=False, quiet=True)
    return folder


def fresh_root(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# ------------------------------------------------------------------------------------------ gate tables
def _num(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def gate_event(reg: Registry, name: str, version: int) -> dict[str, Any]:
    """The report of the latest `gate` event of `name` v`version` (logged whether the release passed or not)."""
    events = [e for e in reg.history(name) if e.kind == "gate" and e.version == version]
    return events[-1].details


def gate_rows(case: str, report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in report["results"]:
        d = r.get("details") or {}
        paired = "p_value" in d
        verdict = r["verdict"].split(" (")[0]
        if paired and d.get("only_candidate") is not None:
            verdict += f" (discordant: {d['only_candidate']} only candidate right, {d['only_production']} only " \
                       "production right)"
        rows.append([case, r["name"], _num(r["candidate"]), _num(r["production"]), r["margin"], verdict,
                     f"{d['p_value']:.3g}" if paired else "",
                     f"{d['difference']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]" if paired else ""])
    return rows


def gate_table(title: str, rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for col in ("case", "gate", "candidate", "production", "required", "verdict", "p", "difference [95% CI]"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    return table


def release_case(reg: Registry, name: str, production: Path, candidate: Path) -> dict[str, Any]:
    """Register and release `production` (first release), then register `candidate` and release it against it."""
    v1 = reg.register(production, name=name)
    reg.release(name, v1.version)
    v2 = reg.register(candidate, name=name)
    t0 = time.perf_counter()
    try:
        reg.release(name, v2.version)
        outcome = "released"
    except RegistryError:
        outcome = "BLOCKED"
    seconds = time.perf_counter() - t0
    report = gate_event(reg, name, v2.version)
    live = reg.catalog.aliases(name)["production"].version
    return {"v1": v1, "v2": v2, "outcome": outcome, "seconds": seconds, "report": report, "live": live}


def outputs_equal(reg: Registry, name: str, a: str, b: str) -> bool:
    from shipml.registry.holdout import holdout_outputs, open_holdout

    frozen = open_holdout(reg.store, reg.catalog.holdout(name))
    return bool(np.array_equal(holdout_outputs(reg.store, a, frozen), holdout_outputs(reg.store, b, frozen)))


# ------------------------------------------------------------------------------------------------ mnist
def mnist(work: Path) -> None:
    data = [f"data.path={SHARED / 'mnist5k.tar.gz'}"]
    full = cached_run(work, "mnist-full", "mnist.yaml", data)
    short = cached_run(work, "mnist-1epoch", "mnist.yaml", [*data, "train.epochs=1"])
    pruned = variant(full, "prune", PRUNE)
    again = work / "mnist-reexport"
    if not (again / "signature.json").is_file():
        package(full)
        time.sleep(1.1)  # the provenance's export time has 1 s resolution: a new second, a new digest
        export_run(full, out=again, quiet=True)
    cases = {  # name: (production, candidate, expected, what)
        "mnist-worse-1epoch": (package(full), package(short), "BLOCKED", "full (15 ep) -> 1-epoch model"),
        "mnist-worse-pruned": (package(full), pruned, "BLOCKED", "full -> 70% channels pruned, no recovery"),
        "mnist-same": (package(full), again, "released, p = 1", "full -> the same run exported again"),
        "mnist-better": (package(short), package(full), "released, better", "1-epoch model -> full (15 ep)"),
    }
    summary = Table(title=f"MNIST 5k CNN ({full.id} full, {short.id} 1 epoch): release of v2 against production v1 "
                          "on the 500-image test split, default gates")
    for col in ("case", "production -> candidate", "v1 / v2 digest", "new version", "outcome", "production now",
                "paired verdict", "p", "expected", "as expected", "release s"):
        summary.add_column(col)
    rows: list[list[str]] = []
    with Registry(fresh_root(work / "mnist-registry")) as reg:
        for name, (prod, cand, expected, what) in cases.items():
            got = release_case(reg, name, prod, cand)
            paired = next(r for r in got["report"]["results"] if r["name"].startswith("paired"))
            p, verdict = paired["details"]["p_value"], paired["details"]["verdict"]
            if name == "mnist-same":
                same = outputs_equal(reg, name, got["v1"].digest, got["v2"].digest)
                ok = got["outcome"] == "released" and p == 1.0 and same and got["v2"].new
                verdict += ", outputs identical" if same else ", OUTPUTS DIFFER"
            elif name == "mnist-better":
                ok = got["outcome"] == "released" and verdict == "better"
            else:
                ok = got["outcome"] == "BLOCKED" and verdict == "worse"
            summary.add_row(name, what, f"{got['v1'].digest[:8]} / {got['v2'].digest[:8]}",
                            "yes" if got["v2"].new else "no (same digest)", got["outcome"], f"v{got['live']}",
                            verdict, f"{p:.3g}", expected, "yes" if ok else "NO", f"{got['seconds']:.1f}")
            rows += gate_rows(name, got["report"])
    CONSOLE.print(summary)
    CONSOLE.print(gate_table("MNIST gate tables (the `gate` events the releases logged)", rows))


# ------------------------------------------------------------------------------------------------- spam
def _cpu_busy() -> float:
    """Busy CPU seconds of the whole machine so far (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _others_busy(seconds: float = 3.0) -> float:
    """Cores used by other processes over the next `seconds` (this process sleeps meanwhile)."""
    b0 = _cpu_busy()
    time.sleep(seconds)
    return (_cpu_busy() - b0) / seconds


def _busiest() -> str:
    out = subprocess.run(["ps", "-eo", "pcpu,pid,etime,comm", "--sort=-pcpu"], capture_output=True, text=True).stdout
    return "; ".join(" ".join(line.split()) for line in out.splitlines()[1:4])


def wait_quiet(busy: float, max_wait: float) -> tuple[float, bool]:
    """Wait until other processes use under `busy` cores (3 s samples), at most `max_wait` s."""
    t0 = time.perf_counter()
    while True:
        others = _others_busy()
        if others < busy or time.perf_counter() - t0 > max_wait:
            return others, others < busy
        print(f"  waiting: others use {others:.2f} cores; {Path('/proc/loadavg').read_text().strip()}; "
              f"busiest: {_busiest()}")
        time.sleep(20)


def timed_cli(root: Path) -> dict[str, Any]:
    """`shipml release spam 2` on `root` in a subprocess: wall time, and the CPU it and others used."""
    exe = Path(sys.executable).parent / "shipml"
    cmd = [str(exe) if exe.exists() else "shipml", "release", "spam", "2", "--registry", str(root)]
    load = Path("/proc/loadavg").read_text().strip()
    before = os.times()
    b0, t0 = _cpu_busy(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    busy, after = _cpu_busy() - b0, os.times()
    own = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"wall": wall, "rc": proc.returncode, "out": proc.stdout + proc.stderr, "load": load, "cpu": own,
            "others": max(0.0, busy - own) / wall, "busiest": _busiest()}


def split(root: Path) -> list[tuple[str, float]]:
    """The release re-done in-process, step by step (same cache state as the timed CLI run)."""
    from shipml.registry import gates as g
    from shipml.registry.holdout import holdout_outputs, open_holdout
    from shipml.runtime import Package

    steps: list[tuple[str, float]] = []
    t = time.perf_counter()

    def step(what: str) -> None:
        nonlocal t
        now = time.perf_counter()
        steps.append((what, now - t))
        t = now

    with Registry(root) as reg:
        v = reg.catalog.version("spam", 2)
        cand = Package.open(reg.store.open(v.digest))
        step("open the catalog, open + verify the int8 candidate (sha256 of every file)")
        frozen = open_holdout(reg.store, reg.catalog.holdout("spam"))
        step(f"read + verify the frozen holdout ({len(frozen)} emails)")
        prod_digest = reg.catalog.version("spam", reg.catalog.aliases("spam")["production"].version).digest
        prod = Package.open(reg.store.open(prod_digest))
        prod_out = holdout_outputs(reg.store, prod_digest, frozen)
        step("open + verify the fp32 production package, its cached holdout outputs")
        cand_out = holdout_outputs(reg.store, v.digest, frozen)
        step("candidate holdout predictions (int8, 594 emails, tokenize + onnxruntime; opens the package again)")
        report = g.run_gates(cand, cand_out, prod, prod_out, frozen, g.parse_gates(g.DEFAULT_GATES))
        step("default gates (metrics, McNemar mid-p + Newcombe CI, signature)")
        reg.catalog.log_event("spam", "gate", version=2, details=report.to_dict())
        reg.catalog.update_aliases("spam", {"production": (2, None)}, event="release", why=None, details={},
                                   expect={"production": 1})
        step("catalog writes (gate event, alias move + release event)")
        g._measure(cand, frozen, 0)
        step(f"not in the default gates: a p99_ms gate's measurement ({g.LATENCY_N} batch-1 requests in a fresh "
             "process)")
    return steps


def spam(work: Path, epochs: int, extra: list[str], attempts: int, busy: float, max_wait: float) -> None:
    data = work / "spam-data"
    if not (data / "MANIFEST.json").is_file():
        fetch_dataset("spamassassin", data, from_dir=SHARED / "spamassassin")
    key = "-".join([f"spam-{epochs}epoch", *(x.replace("=", "-").replace("/", "_") for x in extra)])
    run = cached_run(work, key, "spam.yaml", [f"data.path={data}", f"train.epochs={epochs}", *extra])
    fp32, int8 = package(run), variant(run, "int8")
    base = fresh_root(work / "spam-registry")
    with Registry(base) as reg:
        reg.register(fp32, name="spam")
        t0 = time.perf_counter()
        reg.release("spam", 1)
        first = time.perf_counter() - t0
        reg.register(int8, name="spam")
    acc = run.metrics["test"]["accuracy"]["value"]
    how = " ".join(extra) or "no other overrides"
    print(f"spam: {run.id} ({epochs} epoch(s), {how}, test accuracy {acc:.4f}); first release of v1 (fp32: freeze the "
          f"holdout, fp32 outputs on it, cached) took {first:.1f} s in-process")

    table = Table(title=f"`shipml release spam 2` (int8 v2 against fp32 production v1, holdout 594 emails, run "
                        f"trained {epochs} epoch(s){', ' + ' '.join(extra) if extra else ''}), {os.cpu_count()} cores, "
                        "target < 30 s")
    for col in ("attempt", "wall s", "rc", "CLI CPU s", "others' cores during", "quiet before", "/proc/loadavg before",
                "busiest processes after", "< 30 s"):
        table.add_column(col)
    best = None
    for k in range(1, attempts + 1):
        root = work / f"spam-registry-attempt{k}"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(base, root)
        before, quiet = wait_quiet(busy, max_wait)
        r = timed_cli(root)
        contended = not quiet or r["others"] >= busy
        table.add_row(str(k), f"{r['wall']:.1f}", str(r["rc"]), f"{r['cpu']:.1f}",
                      f"{r['others']:.2f}" + (" (contended)" if contended else ""), f"{before:.2f} cores others",
                      r["load"], r["busiest"], "yes" if r["wall"] < 30 else "NO")
        if r["rc"] != 0:
            print(r["out"])
        if not contended and (best is None or r["wall"] < best[1]["wall"]):
            best = (k, r)
        if best is not None and k >= 2:
            break  # two attempts, at least one quiet: enough
    CONSOLE.print(table)
    shown = best[0] if best is not None else k
    print(f"quiet measurement: attempt {best[0]}, {best[1]['wall']:.1f} s" if best is not None
          else f"no quiet measurement in {k} attempt(s): every figure above is contended")
    with Registry(work / f"spam-registry-attempt{shown}") as reg:
        CONSOLE.print(gate_table(f"spam v2 (int8) against v1 (fp32): the gate event of timed attempt {shown}",
                                 gate_rows("spam int8 vs fp32", gate_event(reg, "spam", 2))))

    wait_quiet(busy, max_wait)
    root = work / "spam-registry-split"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(base, root)
    t0 = time.perf_counter()
    help_run = subprocess.run([str(Path(sys.executable).parent / "shipml"), "release", "--help"],
                              capture_output=True)
    startup = time.perf_counter() - t0
    steps = split(root)
    parts = Table(title="where the release's time goes (the same steps in-process on a copy of the registry)")
    parts.add_column("step")
    parts.add_column("s")
    parts.add_row(f"CLI start-up alone (`shipml release --help`, rc {help_run.returncode})", f"{startup:.2f}")
    for what, s in steps:
        parts.add_row(what, f"{s:.2f}")
    CONSOLE.print(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["mnist", "spam"], action="append")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-registry"), help="cache of runs and registries")
    ap.add_argument("--spam-epochs", type=int, default=1, help="train.epochs of the spam run (release timing does "
                    "not depend on it)")
    ap.add_argument("--spam-set", action="append", default=[], help="extra overrides of the spam run, e.g. "
                    "model.freeze_layers=6 (same network, so the same release cost, trained faster)")
    ap.add_argument("--attempts", type=int, default=3, help="timed releases at most (stops after a quiet one)")
    ap.add_argument("--busy", type=float, default=0.3, help="cores other processes may use for a quiet timing")
    ap.add_argument("--max-wait", type=float, default=300.0, help="seconds to wait for a quiet machine per attempt")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, torch threads "
          f"{__import__('torch').get_num_threads()}, work {args.work}")
    for case in args.only or ["mnist", "spam"]:
        if case == "mnist":
            mnist(args.work)
        else:
            spam(args.work, args.spam_epochs, args.spam_set, args.attempts, args.busy, args.max_wait)


if __name__ == "__main__":
    main()
