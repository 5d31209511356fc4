"""`shipml tune`: an Optuna study whose trials are ordinary runs (docs/scaling.md).

The first trial is the config's own values (the shipped recipe is always a candidate); each later trial
samples `tune.space` (TPE by default, seeded). Each trains a run of its own under
`<output_dir>/<study>/trial-NNNN` with the test split left alone (validation only), reports its validation
metric after every epoch (the pruner may stop it there), and returns the best value over its epochs. A
trial whose run fails is recorded as failed with its error and the study goes on.

The study lives in a database (a SQLite file `<output_dir>/tune.db` by default, PostgreSQL for many
workers): it resumes after a crash (a dead worker's trial is failed by its missed heartbeat), and N
processes or machines pointed at one database split the trials between them. When the study has its
trials, the best run is scored on the test split (once, for it alone), `tune.json` in that run says how
it was chosen, and its config is written as `<output_dir>/<study>-best.yaml`.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipml.config import Config, load_config, parse_config
from shipml.core.files import atomic_write_bytes, atomic_write_json
from shipml.core.metric_names import HEADLINE, metric_direction
from shipml.errors import ConfigError, ShipmlError
from shipml.tune.space import parse_space, recipe, suggest

__all__ = ["StudyResult", "open_study", "run_study", "storage_url"]

VAL_METRICS = {"classification": ("accuracy", "macro_f1", "loss"), "regression": ("r2", "mae", "loss")}


@dataclass(frozen=True)
class StudyResult:
    name: str
    storage: str
    trials: dict[str, int]  # state -> count
    best: dict[str, Any] | None  # number, value, params, run
    best_config: Path | None


def storage_url(cfg: Config, storage: str | None) -> str:
    """The study database: as given, else a SQLite file in the config's output_dir."""
    if storage:
        return storage
    out = Path(cfg.output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(out / 'tune.db').resolve()}"


def _rdb(url: str) -> Any:
    import optuna

    for attempt in range(6):
        try:  # a worker that dies stops beating; its RUNNING trial is failed when the next worker starts
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable in use
                return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=90)
        except Exception as err:  # sqlalchemy / driver errors
            # N workers starting on a fresh database race to create optuna's tables: the losers retry
            if attempt < 5 and "already exists" in str(err):
                time.sleep(0.5 * (attempt + 1))
                continue
            raise ConfigError(f"cannot open the study storage {url.split('@')[-1]}: {err}") from None
    raise AssertionError("unreachable")


def open_study(name: str, storage: str) -> Any:
    """An existing study (for --show)."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=_rdb(storage))
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(_rdb(storage))]
        raise ConfigError(f"no study {name!r} in {storage.split('@')[-1]}; studies there: {names or 'none'}") from None


def _metric(cfg: Config, task_kind: str) -> tuple[str, str]:
    metric = cfg.tune.metric or HEADLINE[task_kind]
    allowed = VAL_METRICS[task_kind]
    if metric not in allowed:
        raise ConfigError(f"tune.metric {metric!r} is not computed on the validation split of a {task_kind} task; "
                          f"choose one of {list(allowed)}")
    return metric, "minimize" if metric_direction(metric) == "min" else "maximize"


def _sampler_pruner(cfg: Config) -> tuple[Any, Any]:
    import optuna

    t = cfg.tune
    sampler = (optuna.samplers.TPESampler(seed=cfg.seed) if t.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=cfg.seed))
    if t.pruner == "median":
        pruner: Any = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    elif t.pruner == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=cfg.train.epochs)
    else:
        pruner = optuna.pruners.NopPruner()
    return sampler, pruner


def _objective(cfg: Config, params: list[Any], metric: str, direction: str, root: Path) -> Any:
    import optuna

    import shipml

    base = cfg.model_dump(mode="json")

    def objective(trial: optuna.Trial) -> float:
        from shipml.tune.space import apply

        values = suggest(trial, params, base)
        run_dir = root / f"trial-{trial.number:04d}"
        trial.set_user_attr("run", str(run_dir))
        best: list[float] = []
        epoch = [0]

        def on_validate(rec: dict[str, Any]) -> None:
            value = float(rec[metric])
            best.append(value)
            epoch[0] += 1
            trial.report(value, step=epoch[0])
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after {epoch[0]} validation(s): {metric} {value:.4f}")

        try:
            trial_cfg = parse_config(apply(base, values), source=f"trial {trial.number}")
            if run_dir.exists():  # a trial number is used once; leftovers of a crashed attempt go
                shutil.rmtree(run_dir)
            shipml.train(trial_cfg, run_dir=run_dir, quiet=True, score_test=False, on_validate=on_validate)
        except optuna.TrialPruned:
            raise
        except ShipmlError as err:
            trial.set_user_attr("error", str(err))
            raise
        if not best:
            raise ConfigError("the trial validated nothing: the data set needs a validation split for tuning")
        value = min(best) if direction == "minimize" else max(best)
        if not math.isfinite(value):
            raise ConfigError(f"the trial's validation {metric} is {value}")
        return value

    return objective


def run_study(config: str | Path | Config, *, trials: int | None = None, timeout: float | None = None,
              storage: str | None = None, study: str | None = None, quiet: bool = False) -> StudyResult:
    """Run (or resume, or join) the study of a config; then score its best run on the test split."""
    import optuna

    from shipml.tasks import get_task_class

    cfg = config if isinstance(config, Config) else load_config(config)
    params = parse_space(cfg)  # every bad space is refused here, before any trial runs
    task_kind = get_task_class(cfg.task.name).kind
    metric, direction = _metric(cfg, task_kind)
    if cfg.data.split.val <= 0 and cfg.data.split_column is None:
        raise ConfigError("tuning needs a validation split (data.split.val > 0): trials are compared on it, never "
                          "on the test split")
    name = study or cfg.name
    url = storage_url(cfg, storage)
    sampler, pruner = _sampler_pruner(cfg)
    if quiet:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = optuna.create_study(study_name=name, storage=_rdb(url), direction=direction, sampler=sampler,
                             pruner=pruner, load_if_exists=True)
    recorded = st.user_attrs.get("metric")
    if recorded is None:
        st.set_user_attr("metric", metric)
    elif recorded != metric or st.direction.name.lower() != direction:
        raise ConfigError(f"study {name!r} optimises {recorded} ({st.direction.name.lower()}); this config asks for "
                          f"{metric} ({direction}): use another --study name")
    root = Path(cfg.output_dir).expanduser().resolve() / name
    root.mkdir(parents=True, exist_ok=True)
    total = trials or cfg.tune.trials
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    done = len(st.get_trials(deepcopy=False, states=states))
    if not st.get_trials(deepcopy=False):  # a new study starts from the config's own recipe
        st.enqueue_trial(recipe(params, cfg.model_dump(mode="json")), skip_if_exists=True)
    if done < total:
        stop = optuna.study.MaxTrialsCallback(total, states=states)  # all workers together stop at `total`
        st.optimize(_objective(cfg, params, metric, direction, root), n_trials=total - done,
                    timeout=timeout or cfg.tune.timeout, callbacks=[stop], catch=(ShipmlError,), gc_after_trial=True)
    return _finish(st, cfg, name, url, metric, direction, total)


def _finish(st: Any, cfg: Config, name: str, url: str, metric: str, direction: str, planned: int) -> StudyResult:
    """Score the best trial's run on the test split (once per chosen run) and write the best config."""
    import optuna

    import shipml

    counts: dict[str, int] = {}
    for t in st.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    complete = st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return StudyResult(name, url, counts, None, None)
    best = st.best_trial
    run_dir = Path(best.user_attrs["run"])
    marker = run_dir / "tune.json"
    info = {"study": name, "storage": url.split("@")[-1], "metric": metric, "direction": direction,
            "trial": best.number, "value": best.value, "params": best.params, "trials": counts, "planned": planned,
            "tested_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tested = marker.is_file() and json.loads(marker.read_text()).get("trial") == best.number
    if not tested:  # the test split is scored once, for the chosen configuration alone
        run = shipml.Run(run_dir)
        run.evaluate(quiet=True, test=True)
        atomic_write_json(marker, info)
        run.report()
    else:  # the counts grow as other workers finish trials; the choice and its test figures stay
        atomic_write_json(marker, json.loads(marker.read_text()) | {"trials": counts})
    best_config = Path(cfg.output_dir).expanduser() / f"{name}-best.yaml"
    atomic_write_bytes(best_config, (run_dir / "config.yaml").read_bytes())
    logging.getLogger("shipml.tune").info("best trial %d: %s %.4f", best.number, metric, best.value)
    return StudyResult(name, url, counts, {"number": best.number, "value": best.value, "params": best.params,
                                           "run": str(run_dir)}, best_config)
