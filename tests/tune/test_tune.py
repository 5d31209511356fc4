"""shipml tune: bad search spaces refused before any trial; a tiny study on real data (breast cancer) with
pruning exercised and a trial that fails (its learning rate diverges) recorded while the study goes on; the
winner alone scored on the test split; resuming; two workers on one PostgreSQL study without duplicates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shipml.config import load_config, parse_config
from shipml.errors import ConfigError
from shipml.tune import open_study, run_study
from shipml.tune.show import show_study


def _config(tmp: Path, space: dict[str, Any], lr: float = 1e-3, **tune: Any) -> Any:
    return parse_config({"name": "cancer", "output_dir": str(tmp / "runs"), "data": {"path": "sklearn:breast_cancer"},
                         "task": {"name": "tabular-classification"},
                         "model": {"arch": "mlp", "hidden": [32]},
                         "train": {"epochs": 4, "batch_size": 32, "lr": lr, "optimizer": "sgd"},
                         "evaluate": {"bootstrap": 0, "baseline": "none"},
                         "tune": {"space": space, "trials": 3, "pruner": "median", **tune}})


@pytest.mark.parametrize(("space", "says"), [
    ({"train.lrr": {"loguniform": [1e-4, 1e-2]}}, "lrr"),
    ({"train.lr": {"uniform": [1e-2, 1e-3]}}, "is empty"),
    ({"train.lr": {"loguniform": [0, 1e-2]}}, "above 0"),
    ({"data.path": {"choice": ["a", "b"]}}, "not tunable"),
    ({"seed": {"int": [0, 5]}}, "not tunable"),
    ({"train.lr": {"normal": [0, 1]}}, "exactly one of"),
    ({"train.batch_size": {"int": [0, 8]}}, "not a valid config"),
    ({"train.epochs": {"choice": [3]}}, "at least two"),
    ({"train.momentum": {"uniform": [0.5, 0.9], "when": {"train.nesterov": True}}}, "neither a searched field"),
    ({}, "tune.space is empty"),
])
def test_bad_search_spaces_are_refused_before_any_trial(tmp_path: Path, space: dict, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        run_study(_config(tmp_path, space), quiet=True)
    assert not (tmp_path / "runs" / "cancer").exists()  # nothing ran


def test_a_tiny_study_prunes_records_a_failure_and_tests_only_the_winner(tmp_path: Path) -> None:
    space = {"train.lr": {"choice": [0.05, 0.02, 1e-6, 1e9]}}  # the recipe, worse, hopeless, diverging (fails)
    cfg = _config(tmp_path, space, lr=0.05, trials=7, sampler="random")
    result = run_study(cfg, quiet=True)
    assert sum(result.trials.values()) == 7
    assert result.trials.get("fail", 0) >= 1 and result.trials.get("pruned", 0) >= 1, result.trials
    study = open_study("cancer", result.storage)
    shown = show_study(study)
    failed = [t for t in shown["trials"] if t["state"] == "fail"]
    assert all("loss became" in t["error"] for t in failed), failed  # the error is kept with the trial
    assert shown["trials"][0]["state"] == "complete"  # best first
    assert next(t for t in shown["trials"] if t["number"] == 0)["params"] == {"train.lr": 0.05}  # the recipe first
    pruned = [t for t in shown["trials"] if t["state"] == "pruned"]
    assert all(t["epochs"] < 4 for t in pruned)  # stopped before the last epoch
    winner = Path(result.best["run"])
    tested = [Path(t["run"]) for t in shown["trials"]
              if t["run"] and "test" in json.loads((Path(t["run"]) / "metrics.json").read_text()
                                                   if (Path(t["run"]) / "metrics.json").exists() else "{}")]
    assert tested == [winner]  # the test split was scored for the winner alone
    info = json.loads((winner / "tune.json").read_text())
    assert info["trial"] == result.best["number"] and info["trials"] == result.trials and info["metric"] == "accuracy"
    assert "the best of 7 configurations tried" in (winner / "report.html").read_text()
    best = load_config(result.best_config)  # `shipml train` accepts it as is
    assert best.train.lr == result.best["params"]["train.lr"]

    again = run_study(cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"trials": 8})}), quiet=True)
    assert sum(again.trials.values()) == 8  # resumed: one more, the seven are not run again


WORKER = """
import sys
from shipml.config import parse_config
from shipml.tune import run_study
cfg = parse_config(__import__("json").loads(sys.argv[1]))
run_study(cfg, storage=sys.argv[2], study="shared", quiet=True)
"""


def test_two_workers_on_postgres_split_the_trials(postgres_url: str, tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"train.lr": {"loguniform": [1e-3, 1e-1]}}, trials=6, pruner="none")
    raw = json.dumps(cfg.model_dump(mode="json"))
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, raw, postgres_url], stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outcomes = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-1500:] for _, err in outcomes]
    study = open_study("shared", postgres_url)
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    runs = [t.user_attrs["run"] for t in trials]
    assert len(set(numbers)) == len(numbers) and len(set(runs)) == len(runs)  # no trial run twice
    assert 6 <= len(trials) <= 7  # the study's budget, give or take the last race between the two workers
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert len(list((tmp_path / "runs" / "shared").glob("trial-*"))) == len(trials)


@pytest.mark.slow  # a study through the command (~17 s); the tune room itself is the tiny study above
def test_cli_tune_and_show(tmp_path: Path) -> None:
    import yaml

    cfg = _config(tmp_path, {"train.lr": {"loguniform": [1e-3, 1e-1]}}, trials=2, pruner="none")
    path = tmp_path / "cancer.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    run = [sys.executable, "-m", "shipml.cli", "tune"]
    got = subprocess.run([*run, str(path), "--quiet"], capture_output=True, text=True, timeout=600)
    assert got.returncode == 0, got.stderr
    assert "study cancer: 2 complete" in got.stdout and "cancer-best.yaml" in got.stdout
    shown = subprocess.run([*run, str(path), "--show", "cancer"], capture_output=True, text=True, timeout=120,
                           env={**__import__("os").environ, "COLUMNS": "200"})
    assert shown.returncode == 0 and "train.lr=" in shown.stdout and "complete" in shown.stdout, shown.stderr
    bad = subprocess.run([*run, str(path), "--timeout", "soon"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--timeout 'soon'" in bad.stderr
    missing = subprocess.run([*run, "--show", "nope", "--storage", f"sqlite:///{tmp_path / 'runs' / 'tune.db'}"],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no study 'nope'" in missing.stderr and "cancer" in missing.stderr
