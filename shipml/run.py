"""The Python API: `train(config) -> Run`, and `Run` to evaluate, predict and report on a run directory.

A run directory (documented in docs/runs.md) is the artifact later stages read:

    runs/<id>/config.yaml  run.json  data.json  metrics.jsonl  checkpoints/  best.safetensors
              model/{model.safetensors,task.json}  metrics.json  predictions.parquet  report.html
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save

from shipml._console import Reporter, print_summary
from shipml.config import Config, dump_config, load_config, parse_config
from shipml.core.files import atomic_write_bytes, atomic_write_json, exclusive
from shipml.core.machine import library_versions, machine_info
from shipml.data import load_dataset
from shipml.data.dataset import Dataset
from shipml.errors import DataError, TrainError
from shipml.evaluate import write_report
from shipml.runtime.predict import Network, Predictor
from shipml.scorecard import check_scoring, score
from shipml.tasks import Task, get_task_class
from shipml.training import fit

__all__ = ["Run", "train"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object the run directory holds; a damaged one is a TrainError naming the file, not a traceback."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainError(f"{path} is missing: the run's {what} is not there") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise TrainError(f"{path} is not valid JSON ({err}): the run's {what} is damaged. Restore it, or start a "
                         "new run") from None
    if not isinstance(obj, dict):
        raise TrainError(f"{path} holds a JSON {type(obj).__name__}, not an object: the run's {what} is damaged")
    return obj


def _environment(precision: str, threads: int, threads_reason: str = "") -> dict[str, Any]:
    return {**machine_info(), "threads": threads, "threads_reason": threads_reason, "precision": precision,
            **library_versions("torch", "numpy", "pandas", "scikit-learn", "accelerate", "transformers")}


def _torch_network(model: torch.nn.Module) -> Network:
    """The run's PyTorch model as the runtime's network: numpy feeds -> (B, k) float32 outputs."""
    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            out = model(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feeds.items()})
        return out.float().reshape(len(out), -1).numpy()

    return run


def _resolve(cfg: Config | str | Path | dict[str, Any], overrides: list[str] | None) -> Config:
    if isinstance(cfg, Config):
        return parse_config(cfg.model_dump(mode="json"), overrides=overrides) if overrides else cfg
    if isinstance(cfg, dict):
        return parse_config(cfg, overrides=overrides)
    return load_config(cfg, overrides=overrides)


def train(config: Config | str | Path | dict[str, Any], *, overrides: list[str] | None = None,
          run_dir: str | Path | None = None, quiet: bool = False,
          on_validate: Callable[[dict[str, Any]], None] | None = None, score_test: bool = True) -> Run:
    """Load data, fit the task's preprocessing, train, evaluate on the test split and write the report.
    `on_validate` sees each validation record during training (a tuning trial reports and prunes through it);
    `score_test=False` scores validation only (a tuning trial; `Run.evaluate()` scores the test split later)."""
    reporter = Reporter(quiet=quiet)
    cfg = _resolve(config, overrides)
    task_cls = get_task_class(cfg.task.name)
    task = task_cls.from_config(cfg)
    update: dict[str, Any] = {"model": task.model_cfg}  # the resolved architecture goes on record
    local = Path(cfg.data.path).expanduser()
    if not cfg.data.path.startswith("sklearn:") and local.exists():  # later commands may run from elsewhere
        update["data"] = cfg.data.model_copy(update={"path": str(local.resolve())})
    cfg = cfg.model_copy(update=update)
    data = load_dataset(cfg.data, seed=cfg.seed, task_kind=task.kind, kind=task.data_kind)
    for a in data.log.actions:
        reporter.info(f"data: {a}")
    for w in data.log.warnings:
        reporter.warn(w)
    if data.log.skipped:
        reporter.warn(f"{len(data.log.skipped)} unreadable item(s) skipped; listed in data.json and the report")
    if run_dir is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(cfg.output_dir) / f"{cfg.name}-{stamp}-{secrets.token_hex(2)}"
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise TrainError(f"{run_dir} already exists and is not empty; resume it with `shipml train --resume {run_dir}`")
    run_dir.mkdir(parents=True, exist_ok=True)
    task.fit(data)
    check_scoring(cfg, task)  # before minutes of training, not after
    atomic_write_bytes(run_dir / "config.yaml", dump_config(cfg).encode())
    atomic_write_json(run_dir / "data.json", data.summary())
    run = Run(run_dir)
    run._save_task(task)
    run._write_status("training", created=_now())
    sizes = " / ".join(f"{n} {s}" for s, n in data.summary()["splits"].items())
    reporter.info(f"run [bold]{run_dir}[/bold]: {task.name}, {sizes} rows")
    return run._train(task, data, resume=False, reporter=reporter, on_validate=on_validate, score_test=score_test)


class Run:
    """A run directory: its config, trained model, metrics and report."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "config.yaml").is_file():
            raise TrainError(f"{self.path} is not a shipml run directory (no config.yaml)")
        self.config = load_config(self.path / "config.yaml")
        self._task: Task | None = None
        self._model: torch.nn.Module | None = None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    # ------------------------------------------------------------------ state on disk
    @property
    def info(self) -> dict[str, Any]:
        """run.json: status, timings, environment ({} before training starts)."""
        p = self.path / "run.json"
        return _read_json(p, "status record") if p.exists() else {}

    @property
    def metrics(self) -> dict[str, Any]:
        p = self.path / "metrics.json"
        if not p.exists():
            raise TrainError(f"{self.path} has no metrics.json yet; run `shipml evaluate {self.path}`")
        return _read_json(p, "metrics")

    def _recorded_fingerprint(self) -> str:
        fp = _read_json(self.path / "data.json", "data summary").get("fingerprint")
        if not isinstance(fp, str):
            raise TrainError(f"{self.path / 'data.json'} has no fingerprint: the run's data summary is damaged")
        return fp

    @property
    def id(self) -> str:
        return self.path.name

    def _write_status(self, status: str, **fields: Any) -> None:
        info = self.info | {"id": self.id, "name": self.config.name, "task": self.config.task.name,
                            "task_kind": get_task_class(self.config.task.name).kind, "status": status,
                            "seed": self.config.seed} | fields
        if status != "failed":  # a failed run that was resumed is not failed any more
            info = {k: v for k, v in info.items() if k not in ("error", "failed") or k in fields}
        atomic_write_json(self.path / "run.json", info)

    def _save_task(self, task: Task) -> None:
        """model/task.json and the task's asset files (e.g. tokenizer.json): what rebuilds the model."""
        folder = self.path / "model"
        folder.mkdir(exist_ok=True)
        for name, content in task.files().items():
            atomic_write_bytes(folder / name, content)
        atomic_write_json(folder / "task.json", task.assets())

    @property
    def task(self) -> Task:
        """The fitted task (preprocessing, labels, architecture) saved with the model."""
        if self._task is None:
            p = self.path / "model" / "task.json"
            if not p.exists():
                raise TrainError(f"{self.path} has no fitted task; it did not get past data loading")
            assets = _read_json(p, "fitted task (model/task.json)")
            task = get_task_class(assets["task"]).from_assets(assets)
            task.load_files(p.parent)
            self._task = task
        return self._task

    @property
    def model(self) -> torch.nn.Module:
        """The final model (best validation checkpoint), in eval mode."""
        if self._model is None:
            weights = self.path / "model" / "model.safetensors"
            if not weights.exists():
                raise TrainError(
                    f"{self.path} has no finished model; finish it with `shipml train --resume {self.path}`"
                )
            model = self.task.build_model(pretrained=False)
            model.load_state_dict(load_file(str(weights)))
            self._model = model.eval()
        return self._model

    # ------------------------------------------------------------------ training
    @classmethod
    def resume(cls, path: str | Path, *, quiet: bool = False) -> Run:
        """Continue an interrupted run from its newest good checkpoint; bit-identical to not stopping."""
        run = cls(path)
        reporter = Reporter(quiet=quiet)
        if run.info.get("status") == "finished":
            if (run.path / "model" / "model.safetensors").is_file():
                reporter.info(f"{run.path} is already finished")
                return run
            # the final weights were deleted: the last checkpoint (and best.safetensors) rebuild them exactly
            reporter.warn(f"{run.path} is finished but model/model.safetensors is gone; rebuilding it from the "
                          "checkpoints")
        task = run.task
        data = load_dataset(run.config.data, seed=run.config.seed, task_kind=task.kind, kind=task.data_kind)
        recorded = run._recorded_fingerprint()
        if data.fingerprint != recorded:
            raise DataError(f"the data at {run.config.data.path} changed since {run.path} started "
                            f"(fingerprint {data.fingerprint[:12]} != {recorded[:12]}); start a new run instead")
        return run._train(task, data, resume=True, reporter=reporter)

    def _train(self, task: Task, data: Dataset, *, resume: bool, reporter: Reporter,
               on_validate: Callable[[dict[str, Any]], None] | None = None, score_test: bool = True) -> Run:
        # two processes training one run would corrupt it; the OS drops the lock when its holder dies
        busy = TrainError(f"{self.path} is being trained by another process; wait for it or stop it")
        with exclusive(self.path / ".lock", busy):
            return self._train_locked(task, data, resume=resume, reporter=reporter, on_validate=on_validate,
                                      score_test=score_test)

    def _train_locked(self, task: Task, data: Dataset, *, resume: bool, reporter: Reporter,
                      on_validate: Callable[[dict[str, Any]], None] | None = None, score_test: bool = True) -> Run:
        cfg = self.config
        try:
            result = fit(task, data, cfg.train, self.path, seed=cfg.seed, resume=resume, reporter=reporter,
                         on_validate=on_validate)
        except TrainError as err:  # e.g. the loss diverged: on record, so nobody mistakes the run for a live one
            self._write_status("failed", error=str(err), failed=_now())
            raise
        model_dir = self.path / "model"
        model_dir.mkdir(exist_ok=True)
        state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
        atomic_write_bytes(model_dir / "model.safetensors", save(state, metadata={"run": self.id}))
        self._task, self._model = task, result.model
        self._write_status(
            "trained", train_seconds=round(result.seconds, 2), steps=result.steps, best=result.best,
            stopped_early=result.stopped_early, samples_per_s=round(result.samples_per_s, 1),
            params=task.param_count(result.model),
            environment=_environment(result.precision, torch.get_num_threads(), result.threads_reason),
        )
        reporter.info(f"trained {result.steps} steps in {result.seconds:.1f}s ({result.samples_per_s:.0f} samples/s)")
        self.evaluate(data=data, quiet=reporter.quiet, tune=True, test=score_test)
        self._write_status("finished", finished=_now())
        self.report()  # last, so the report shows the finished status; `shipml report` can always redo it
        return self

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, *, data: Dataset | None = None, quiet: bool = False, tune: bool = False,
                 test: bool = True) -> dict[str, Any]:
        """Score the final model and a classic baseline on the test split; writes metrics.json and
        predictions.parquet. `tune` re-tunes a binary decision threshold on validation (done after training);
        `test=False` scores validation only."""
        cfg, task = self.config, self.task
        reporter = Reporter(quiet=quiet)
        if data is None:
            data = load_dataset(cfg.data, seed=cfg.seed, task_kind=task.kind, kind=task.data_kind)
            if data.fingerprint != self._recorded_fingerprint():
                reporter.warn("the data changed since training; metrics are on the current data")
        out, decision = score(self.path, cfg, task, self.model, data, tune=tune, reporter=reporter, test=test)
        if decision is not None and decision != task.prep.get("decision"):
            self._save_task(task.with_decision(decision))
            self._task = None  # read back from model/task.json on next use
        if not quiet and test:
            print_summary(f"{self.id}: test {task.headline}", task.headline, out, cfg.evaluate.confidence)
        return out

    def report(self) -> Path:
        """(Re)write report.html from the files in the run directory."""
        return write_report(self.path)

    # ------------------------------------------------------------------ prediction
    def spec(self) -> dict[str, Any]:
        """What the model's inputs and outputs mean (the signature.json a package of this run carries, less the
        network's own inputs): the runtime's one input path reads it."""
        return self.task.spec(self.config.data.email.model_dump(mode="json"))

    def predictor(self) -> Predictor:
        return Predictor(self.spec(), self.path / "model", where=self.path)

    def generate(self, label: str | int | None, n: int = 1, seed: int = 0) -> np.ndarray:
        """(n, H, W, C) uint8 images of class `label` from an image-generation run (None: unconditional), drawn
        from `seed` alone: its package draws the same images (`Package.generate`)."""
        from shipml.runtime.generate import ImageGenerator
        from shipml.tasks.gan import to_uint8

        generator = ImageGenerator(self.spec(), where=self.path)
        model = self.model

        def network(feeds: dict[str, np.ndarray]) -> np.ndarray:
            with torch.inference_mode():
                out = model(torch.from_numpy(feeds["noise"]), torch.from_numpy(feeds["class"]))
            return to_uint8(out).numpy()

        return generator.generate(label, n, seed, network)

    def predict(self, x: Any, *, batch_size: int = 32) -> pd.DataFrame:
        """Predict for new data, through the same input path a package uses (`shipml.runtime`): a DataFrame,
        row dicts or a table file (tabular and text tasks; text tasks also take a list of strings and raw
        email files or folders); an (N,H,W[,C]) uint8 array, an image file, a folder of images or a list of
        image paths (image tasks). Same columns as `Package.predict`."""
        return self.predictor().predict(x, _torch_network(self.model), batch_size=batch_size)
