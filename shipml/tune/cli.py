"""What `shipml tune` prints (the command itself is in shipml/cli.py): the study's outcome, and `--show`'s
leaderboard, importances and best config."""

from __future__ import annotations

import re
from pathlib import Path

from shipml._console import table
from shipml.errors import ConfigError

__all__ = ["parse_duration", "show_command", "tune_command"]


def parse_duration(text: str | None) -> float | None:
    """'90', '90s', '30m', '2h' -> seconds."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(f"--timeout {text!r}: give a duration like 90s, 30m or 2h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def tune_command(config: Path, *, trials: int | None, timeout: str | None, storage: str | None, study: str | None,
                 overrides: list[str], quiet: bool) -> None:
    from shipml.config import load_config
    from shipml.tune.study import open_study, run_study

    cfg = load_config(config, overrides=overrides)
    result = run_study(cfg, trials=trials, timeout=parse_duration(timeout), storage=storage, study=study,
                       quiet=quiet)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(result.trials.items()))
    print(f"study {result.name}: {counts} (storage {result.storage.split('@')[-1]})")
    if result.best is None:
        print("no trial completed; see `shipml tune --show " + result.name + "` for the errors")
        return
    if not quiet:
        show_command(result.name, result.storage, None, top=10, study_obj=open_study(result.name, result.storage))
    print(f"best: trial {result.best['number']} ({result.best['run']}); its config: {result.best_config} "
          "(`shipml train` takes it as is); test metrics in its report")


def show_command(name: str, storage: str | None, config: Path | None, top: int = 50, study_obj: object = None) -> None:
    from shipml.config import load_config
    from shipml.tune.show import importances, leaderboard
    from shipml.tune.study import open_study, storage_url

    if study_obj is None:
        if storage is None:
            if config is None:
                raise ConfigError("--show needs the study's --storage, or the config (its output_dir holds tune.db)")
            storage = storage_url(load_config(config), None)
        study_obj = open_study(name, storage)
    metric = study_obj.user_attrs.get("metric", "value")  # type: ignore[attr-defined]
    rows = []
    for t in leaderboard(study_obj, top=top):
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items())
        value = "–" if t["value"] is None else f"{t['value']:.4f}"
        note = (t["error"] or "")[:60] if t["state"] == "fail" else (f"{t['epochs']} epochs" if t["epochs"] else "")
        seconds = "–" if t["seconds"] is None else f"{t['seconds']:.0f}"
        rows.append([str(t["number"]), t["state"], value, params, seconds, note])
    table(f"study {name}: validation {metric}", ["trial", "state", metric, "params", "s", "note"], rows)
    imp = importances(study_obj)
    if imp:
        table("parameter importances (fANOVA)", ["parameter", "importance"],
               [[k, f"{v:.3f}"] for k, v in imp.items()])
