"""The Python API: `train(config) -> Run`, and `Run` to evaluate, predict and report on a run directory.

A run directory (documented in docs/runs.md) is the artifact later stages read:

    runs/<id>/config.yaml  run.json  data.json  metrics.jsonl  checkpoints/  best.safetensors
              model/{model.safetensors,task.json}  metrics.json  predictions.parquet  report.html
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save

from shipml._console import Reporter
from shipml.config import Config, dump_config, load_config, parse_config
from shipml.data import load_dataset, message_text, read_images, read_table
from shipml.data.dataset import CleaningLog, Dataset
from shipml.errors import DataError, TrainError
from shipml.evaluate import HEADLINE, write_report
from shipml.scorecard import score
from shipml.tasks import ClassificationTask, Task, get_task_class
from shipml.training import fit, predict_outputs
from shipml.training.checkpoint import atomic_write_bytes

__all__ = ["Run", "train"]

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
_TABLE_SUFFIXES = {".csv", ".tsv", ".jsonl", ".ndjson", ".parquet", ".pq"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def _environment(precision: str, threads: int) -> dict[str, Any]:
    import accelerate
    import sklearn

    from shipml import __version__

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpu": cpu,
            "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "sklearn": sklearn.__version__, "accelerate": accelerate.__version__,
            "shipml": __version__, "precision": precision}


def _resolve(cfg: Config | str | Path | dict[str, Any], overrides: list[str] | None) -> Config:
    if isinstance(cfg, Config):
        return parse_config(cfg.model_dump(mode="json"), overrides=overrides) if overrides else cfg
    if isinstance(cfg, dict):
        return parse_config(cfg, overrides=overrides)
    return load_config(cfg, overrides=overrides)


def train(config: Config | str | Path | dict[str, Any], *, overrides: list[str] | None = None,
          run_dir: str | Path | None = None, quiet: bool = False) -> Run:
    """Load data, fit the task's preprocessing, train, evaluate on the test split and write the report."""
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
    atomic_write_bytes(run_dir / "config.yaml", dump_config(cfg).encode())
    _write_json(run_dir / "data.json", data.summary())
    task.fit(data)
    run = Run(run_dir)
    run._save_task(task)
    run._write_status("training", created=_now())
    sizes = " / ".join(f"{n} {s}" for s, n in data.summary()["splits"].items())
    reporter.info(f"run [bold]{run_dir}[/bold]: {task.name}, {sizes} rows")
    return run._train(task, data, resume=False, reporter=reporter)


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
        p = self.path / "run.json"
        return json.loads(p.read_text()) if p.exists() else {}

    @property
    def metrics(self) -> dict[str, Any]:
        p = self.path / "metrics.json"
        if not p.exists():
            raise TrainError(f"{self.path} has no metrics.json yet; run `shipml evaluate {self.path}`")
        return json.loads(p.read_text())

    @property
    def id(self) -> str:
        return self.path.name

    def _write_status(self, status: str, **fields: Any) -> None:
        info = self.info | {"id": self.id, "name": self.config.name, "task": self.config.task.name,
                            "status": status, "seed": self.config.seed} | fields
        _write_json(self.path / "run.json", info)

    def _save_task(self, task: Task) -> None:
        """model/task.json and the task's asset files (e.g. tokenizer.json): what rebuilds the model."""
        folder = self.path / "model"
        folder.mkdir(exist_ok=True)
        for name, content in task.files().items():
            atomic_write_bytes(folder / name, content)
        _write_json(folder / "task.json", task.assets())

    @property
    def task(self) -> Task:
        """The fitted task (preprocessing, labels, architecture) saved with the model."""
        if self._task is None:
            p = self.path / "model" / "task.json"
            if not p.exists():
                raise TrainError(f"{self.path} has no fitted task; it did not get past data loading")
            assets = json.loads(p.read_text())
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
            reporter.info(f"{run.path} is already finished")
            return run
        task = run.task
        data = load_dataset(run.config.data, seed=run.config.seed, task_kind=task.kind, kind=task.data_kind)
        recorded = json.loads((run.path / "data.json").read_text())["fingerprint"]
        if data.fingerprint != recorded:
            raise DataError(f"the data at {run.config.data.path} changed since {run.path} started "
                            f"(fingerprint {data.fingerprint[:12]} != {recorded[:12]}); start a new run instead")
        return run._train(task, data, resume=True, reporter=reporter)

    def _train(self, task: Task, data: Dataset, *, resume: bool, reporter: Reporter) -> Run:
        with _exclusive(self.path):
            return self._train_locked(task, data, resume=resume, reporter=reporter)

    def _train_locked(self, task: Task, data: Dataset, *, resume: bool, reporter: Reporter) -> Run:
        cfg = self.config
        result = fit(task, data, cfg.train, self.path, seed=cfg.seed, resume=resume, reporter=reporter)
        model_dir = self.path / "model"
        model_dir.mkdir(exist_ok=True)
        state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
        atomic_write_bytes(model_dir / "model.safetensors", save(state, metadata={"run": self.id}))
        self._task, self._model = task, result.model
        self._write_status(
            "trained", train_seconds=round(result.seconds, 2), steps=result.steps, best=result.best,
            stopped_early=result.stopped_early, samples_per_s=round(result.samples_per_s, 1),
            params=task.param_count(result.model),
            environment=_environment(result.precision, torch.get_num_threads()),
        )
        reporter.info(f"trained {result.steps} steps in {result.seconds:.1f}s ({result.samples_per_s:.0f} samples/s)")
        self.evaluate(data=data, quiet=reporter.quiet, tune=True)
        self._write_status("finished", finished=_now())
        self.report()  # last, so the report shows the finished status; `shipml report` can always redo it
        return self

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, *, data: Dataset | None = None, quiet: bool = False, tune: bool = False) -> dict[str, Any]:
        """Score the final model and a classic baseline on the test split; writes metrics.json and
        predictions.parquet. `tune` re-tunes a binary decision threshold on validation (done after training)."""
        cfg, task = self.config, self.task
        reporter = Reporter(quiet=quiet)
        if data is None:
            data = load_dataset(cfg.data, seed=cfg.seed, task_kind=task.kind, kind=task.data_kind)
            recorded = json.loads((self.path / "data.json").read_text())["fingerprint"]
            if data.fingerprint != recorded:
                reporter.warn("the data changed since training; metrics are on the current data")
        out, changed = score(self.path, cfg, task, self.model, data, tune=tune, reporter=reporter)
        if changed:
            self._save_task(task)
        if not quiet:
            self._print_summary(out)
        return out

    def _print_summary(self, metrics: dict[str, Any]) -> None:
        from rich.console import Console
        from rich.table import Table

        head = HEADLINE[self.task.kind]
        table = Table(title=f"{self.id}: test {head}")
        for col in ("model", head, "95% CI"):
            table.add_column(col)
        rows = [("shipml", metrics.get("test"))]
        if "baseline" in metrics:
            rows.append((metrics["baseline"]["name"], metrics["baseline"]["test"]))
        for name, m in rows:
            if m is None:
                continue
            v = m[head]
            ci = "" if v.get("ci_low") is None else f"[{v['ci_low']:.4f}, {v['ci_high']:.4f}]"
            table.add_row(name, f"{v['value']:.4f}", ci)
        Console(stderr=True).print(table)

    def report(self) -> Path:
        """(Re)write report.html from the files in the run directory."""
        return write_report(self.path)

    # ------------------------------------------------------------------ prediction
    def predict(self, x: Any) -> pd.DataFrame:
        """Predict for new data: a DataFrame or table file (tabular and text tasks; text tasks also take a
        list of strings); an (N,H,W[,C]) uint8 array, an image file, a folder of images or a list of image
        paths (image tasks)."""
        task = self.task
        sources: list[str] | None = None
        if task.data_kind == "images":
            images, sources = self._images_from(x)
            inputs = task.encode(None, images)
        else:
            if task.data_kind == "text" and not isinstance(x, pd.DataFrame):
                x, sources = self._texts_from(x)
            frame = x if isinstance(x, pd.DataFrame) else read_table(Path(x))
            try:
                inputs = task.encode(frame, None)
            except ValueError as err:
                raise DataError(str(err)) from None
        n = len(next(iter(inputs.values())))
        pred = task.postprocess(predict_outputs(self.model, task, inputs, np.arange(n)))
        out = pd.DataFrame({"source": sources} if sources is not None else {})
        if isinstance(task, ClassificationTask):
            assert task.classes is not None
            decided = task.decide(pred)  # argmax, or the tuned threshold of a binary task
            out["prediction"] = [task.classes[i] for i in decided]
            out["confidence"] = pred[np.arange(n), decided]
            for j, c in enumerate(task.classes):
                out[f"proba:{c}"] = pred[:, j]
        else:
            out["prediction"] = pred
        return out

    def _texts_from(self, x: Any) -> tuple[pd.DataFrame | Path, list[str] | None]:
        """Text inputs: a list of strings, a table file, or raw emails (one file, or a folder of them),
        parsed with the run's `data.email` settings exactly as in training."""
        col = self.task.prep["text_column"]
        if isinstance(x, (list, tuple)):
            return pd.DataFrame({col: [str(t) for t in x]}), None
        p = Path(x)
        if not p.exists():
            raise DataError(f"{p} does not exist; give a table file, an email file or a folder of emails")
        if p.is_file() and p.suffix.lower() in _TABLE_SUFFIXES:
            return p, None
        files = sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith(".")) if p.is_dir() else [p]
        if not files:
            raise DataError(f"no files found in {p}")
        em = self.config.data.email
        texts = [message_text(f.read_bytes(), headers=em.headers, body=em.body, max_chars=em.max_chars)
                 for f in files]
        return pd.DataFrame({col: texts}), [str(f) for f in files]

    def _images_from(self, x: Any) -> tuple[np.ndarray, list[str]]:
        h, w = self.task.prep["size"]
        c = self.task.prep["channels"]
        if isinstance(x, np.ndarray):
            arr = x[..., None] if x.ndim == 3 else x
            if arr.ndim != 4 or arr.shape[1:] != (h, w, c) or arr.dtype != np.uint8:
                raise DataError(f"expected uint8 images of shape (N, {h}, {w}, {c}), got {arr.dtype} {x.shape}")
            return arr, [str(i) for i in range(len(arr))]
        paths: list[Path]
        if isinstance(x, (list, tuple)):
            paths = [Path(p) for p in x]
        else:
            p = Path(x)
            if not p.exists():
                raise DataError(f"{p} does not exist; give an image file or a folder of images")
            paths = sorted(q for q in p.rglob("*") if q.suffix.lower() in _IMAGE_SUFFIXES) if p.is_dir() else [p]
        if not paths:
            raise DataError(f"no images found in {x}")
        log = CleaningLog()
        images, ok = read_images(paths, (h, w), c, log)
        for item in log.skipped:
            Reporter().warn(f"skipped {item['item']}: {item['reason']}")
        if not len(ok):
            raise DataError(f"none of the {len(paths)} images could be read")
        return images, [str(paths[i]) for i in ok]


@contextmanager
def _exclusive(run_dir: Path) -> Iterator[None]:
    """Hold an advisory lock on the run directory: two processes training one run would corrupt it.
    The OS drops the lock when its holder dies, so a killed run can be resumed at once."""
    with open(run_dir / ".lock", "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TrainError(f"{run_dir} is being trained by another process; wait for it or stop it") from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
