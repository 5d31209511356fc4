"""Hyperparameter search (`shipml tune`) on real data: pruned against unpruned, and the recipe it must match.

    python bench/tune.py [--only mnist|spam] [--trials 20] [--epochs 6] [--work /tmp/bench-tune]

mnist  examples/mnist.yaml (mnist5k, 80/10/10) searched over lr, width, dropout and batch size for `--trials`
       trials twice with the same seeded TPE sampler: with the median pruner and without. Prints the wall time
       of each study, its trial states, the recipe's validation accuracy (trial 0 is always the config's own
       values) against the best found, and the winner's test accuracy (scored once, for it alone).
spam   examples/spam.yaml on a seeded subset of SpamAssassin (`--spam-rows` emails, max length 128, 1 epoch
       per trial) searched over lr, layer-wise LR decay and frozen layers for at least 8 trials: does the
       search match or beat the shipped recipe on validation?

Run it with nothing else busy: the wall times are the point. The load is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd

from shipml.config import load_config, parse_config
from shipml.tune import open_study, run_study
from shipml.tune.show import leaderboard

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


def _study(cfg: Any, name: str, work: Path, trials: int) -> dict[str, Any]:
    load = _load()
    t0 = time.perf_counter()
    result = run_study(cfg, study=name, storage=f"sqlite:///{work / 'tune.db'}", trials=trials, quiet=True)
    seconds = time.perf_counter() - t0
    rows = leaderboard(open_study(name, result.storage), top=1000)
    recipe = next(r for r in rows if r["number"] == 0)
    test = None
    if result.best is not None:
        metrics = json.loads((Path(result.best["run"]) / "metrics.json").read_text())
        test = metrics["test"]["accuracy"]
    return {"name": name, "seconds": seconds, "load_before": load, "load_after": _load(), "states": result.trials,
            "recipe": recipe["value"], "best": result.best, "test": test}


def _print(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}\n")
    print("| study | wall s | trials (states) | recipe val acc | best val acc | best params | winner test acc "
          "[95% CI] | load before / after |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        states = ", ".join(f"{v} {k}" for k, v in sorted(r["states"].items()))
        best = r["best"] or {}
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in (best.get("params") or {}).items())
        t = r["test"]
        test = f"{t['value']:.4f} [{t['ci_low']:.4f}, {t['ci_high']:.4f}]" if t else "–"
        recipe = "–" if r["recipe"] is None else f"{r['recipe']:.4f}"
        print(f"| {r['name']} | {r['seconds']:.0f} | {states} | {recipe} | {best.get('value', float('nan')):.4f} | "
              f"{params} | {test} | {r['load_before']} / {r['load_after']} |")


def mnist(work: Path, trials: int, epochs: int) -> None:
    base = load_config(ROOT / "examples" / "mnist.yaml").model_dump(mode="json")
    base["data"]["path"] = str(SHARED / "mnist5k.tar.gz")
    base["output_dir"] = str(work / "runs")
    base["train"]["epochs"] = epochs
    base["evaluate"] = {**base.get("evaluate", {}), "bootstrap": 200}
    space = {"train.lr": {"loguniform": [1e-4, 3e-2]}, "model.width": {"choice": [16, 32]},
             "model.dropout": {"uniform": [0.0, 0.5]}, "train.batch_size": {"choice": [32, 64, 128]}}
    rows = []
    for pruner in ("median", "none"):
        cfg = parse_config({**base, "tune": {"space": space, "trials": trials, "pruner": pruner, "sampler": "tpe"}})
        rows.append(_study(cfg, f"mnist-{pruner}", work, trials))
    _print(f"MNIST 5k CNN, {trials} trials x up to {epochs} epochs, TPE (seed 0), {os.cpu_count()} cores", rows)


def spam(work: Path, trials: int, n_rows: int) -> None:
    from shipml.data import fetch_dataset, load_dataset

    mail = work / "spam-mail"
    if not mail.exists():
        fetch_dataset("spamassassin", mail, from_dir=SHARED / "spamassassin")
    cfg = load_config(ROOT / "examples" / "spam.yaml", overrides=[f"data.path={mail}"])
    table = work / f"spam-{n_rows}.parquet"
    if not table.exists():
        data = load_dataset(cfg.data, seed=0, task_kind="classification", kind="text")
        frame = pd.DataFrame({"text": data.frame[data.features[0]].astype(str), "label": data.frame[data.target]})
        frame.sample(n=min(n_rows, len(frame)), random_state=0).to_parquet(table)
    base = cfg.model_dump(mode="json")
    base["data"] = {"path": str(table), "format": "parquet", "target": "label", "features": ["text"]}
    base["output_dir"] = str(work / "runs")
    base["model"] = {**base["model"], "max_length": 128}
    base["train"] = {**base["train"], "epochs": 1}
    space = {"train.lr": {"loguniform": [1e-5, 2e-4]}, "model.layer_lr_decay": {"uniform": [0.7, 1.0]},
             "model.freeze_layers": {"int": [0, 3]}}
    conf = parse_config({**base, "tune": {"space": space, "trials": trials, "pruner": "none", "metric": "accuracy"}})
    _print(f"SpamAssassin subset ({n_rows} emails, 80/10/10), MiniLM at max length 128, 1 epoch per trial",
           [_study(conf, "spam", work, trials)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["mnist", "spam"], action="append")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--spam-trials", type=int, default=8)
    ap.add_argument("--spam-rows", type=int, default=1500)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-tune"))
    ap.add_argument("--fresh", action="store_true", help="delete the work dir's studies and runs first")
    args = ap.parse_args()
    if args.fresh and args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    for case in args.only or ["mnist", "spam"]:
        if case == "mnist":
            mnist(args.work, args.trials, args.epochs)
        else:
            spam(args.work, args.spam_trials, args.spam_rows)


if __name__ == "__main__":
    main()
