"""The package writer: an ONNX file + signature + assets + metrics + provenance, checked before it exists.

A package is assembled in a temporary folder, opened with `shipml.runtime` (the same code that serves
it), run on the run's real test split and compared with the model it was made from; only a package
that loads and passes its parity check is renamed into place (docs/package.md).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from shipml._console import Reporter
from shipml.core.machine import library_versions
from shipml.data import load_dataset
from shipml.data.dataset import Dataset
from shipml.errors import ExportError
from shipml.evaluate import classification_metrics, regression_metrics
from shipml.run import Run
from shipml.runtime import FORMAT, Package, atomic_dir, write_manifest
from shipml.runtime.format import package_digest
from shipml.runtime.predict import decide, softmax
from shipml.runtime.reference import REFERENCE, REFERENCE_ROWS, build_reference
from shipml.tasks.base import ClassificationTask, Task
from shipml.training import predict_outputs

__all__ = ["ExportContext", "Parity", "build_package", "load_context", "reference_outputs"]

FP32_TOLERANCE = 1e-4  # max |logit difference| between an fp32 export and its PyTorch model


@dataclass
class ExportContext:
    """A finished run with its data loaded once: what every export and compression step reads."""

    run: Run
    task: Task
    data: Dataset

    @cached_property
    def inputs(self) -> dict[str, torch.Tensor]:
        """Every row encoded once (export, parity, pruning scores and teacher outputs all read these; students
        and pruned models share the task's preprocessing)."""
        return self.task.encode_dataset(self.data)

    @property
    def test_idx(self) -> np.ndarray:
        idx = self.data.indices("test")
        return idx if len(idx) else self.data.indices("val")

    def raw(self, idx: np.ndarray) -> Any:
        """Rows as a user would hand them to the package: uint8 images, or a frame of feature columns."""
        if self.data.kind == "images":
            assert self.data.images is not None
            return self.data.images[idx]
        return self.data.frame.iloc[idx][list(self.data.features)].reset_index(drop=True)

    def y(self, idx: np.ndarray) -> np.ndarray:
        return self.data.y()[idx]


@dataclass
class Parity:
    max_abs_diff: float
    agreement: float | None  # share of test rows with the same decided label (classification)
    n: int
    tolerance: float | None
    reference: str

    def as_dict(self) -> dict[str, Any]:
        return {"max_abs_diff": self.max_abs_diff, "agreement": self.agreement, "n": self.n,
                "tolerance": self.tolerance, "reference": self.reference}


def load_context(run: Run | str | Path, *, reporter: Reporter | None = None) -> ExportContext:
    """Open a finished run and load its data set (the test split is where parity is checked)."""
    run = run if isinstance(run, Run) else Run(run)
    reporter = reporter or Reporter(quiet=True)
    _ = run.model  # raises "has no finished model; finish it with ..." for an unfinished run
    task = run.task
    data = load_dataset(run.config.data, seed=run.config.seed, task_kind=task.kind, kind=task.data_kind)
    try:
        recorded = json.loads((run.path / "data.json").read_text()).get("fingerprint")
    except (OSError, ValueError):
        raise ExportError(f"{run.path}/data.json is missing or unreadable; the run directory is damaged") from None
    if recorded and data.fingerprint != recorded:
        reporter.warn(f"the data at {run.config.data.path} changed since {run.id} was trained; parity and "
                      "metrics are measured on the current data")
    if not len(data.indices("test")) and not len(data.indices("val")):
        raise ExportError(f"{run.id}: the data set has no test or validation rows to check the export on")
    return ExportContext(run=run, task=task, data=data)


def reference_outputs(model: torch.nn.Module, ctx: ExportContext, task: Task | None = None) -> np.ndarray:
    """PyTorch float32 outputs (logits, or standardised values) on the test split."""
    task = task or ctx.task
    return predict_outputs(model.float().eval(), task, ctx.inputs, ctx.test_idx, batch_size=64).numpy()


def example_batch(ctx: ExportContext, task: Task | None = None) -> dict[str, torch.Tensor]:
    """Two test rows as model inputs: what the exporter traces."""
    task = task or ctx.task
    return task.make_batch(ctx.inputs, torch.as_tensor(ctx.test_idx[:2]), train=False, gen=torch.Generator())


def _signature(ctx: ExportContext, task: Task, example: dict[str, torch.Tensor], output: str,
               n_out: int, variant: dict[str, Any]) -> dict[str, Any]:
    """The task's spec (what inputs and outputs mean, shared with `Run.predict`) + the network's inputs."""
    inputs = []
    for name, t in example.items():
        shape: list[Any] = ["batch", *t.shape[1:]]
        if name in task.sequence_inputs:
            shape = ["batch", "sequence"]
        inputs.append({"name": name, "dtype": "int64" if not t.is_floating_point() else "float32", "shape": shape})
    spec = task.spec(ctx.run.config.data.email.model_dump(mode="json"))
    return {"format": FORMAT, **spec, "inputs": inputs,
            "outputs": [{"name": output, "dtype": "float32", "shape": ["batch", n_out]}], "variant": variant}


def _versions() -> dict[str, str]:
    return library_versions("torch", "onnx", "onnxruntime", "numpy", "pandas", "tokenizers", "transformers")


def model_sha256(folder: Path) -> str:
    """The sha256 of a package's model.onnx, from its manifest: what a variant built from it depends on
    (provenance.json changes with every export, the network does not)."""
    return json.loads((folder / "MANIFEST.json").read_text())["files"]["model.onnx"]["sha256"]


def _score(ctx: ExportContext, task: Task, outputs: np.ndarray, decision: dict[str, Any] | None) -> dict[str, Any]:
    y = ctx.y(ctx.test_idx)
    ev, seed = ctx.run.config.evaluate, ctx.run.config.seed
    if isinstance(task, ClassificationTask):
        proba = softmax(outputs)
        assert task.classes is not None
        return classification_metrics(y, proba, task.classes, labels=decide(proba, decision),
                                      n_bootstrap=ev.bootstrap, confidence=ev.confidence, seed=seed)
    t = task.prep["target"]
    return regression_metrics(y, outputs.reshape(-1) * t["std"] + t["mean"], n_bootstrap=ev.bootstrap,
                              confidence=ev.confidence, seed=seed)


def _parity(task: Task, ours: np.ndarray, ref: np.ndarray, decision: dict[str, Any] | None, tolerance: float | None,
            reference: str) -> Parity:
    diff = float(np.abs(ours.astype(np.float64) - ref.astype(np.float64)).max()) if len(ref) else 0.0
    agreement = None
    if isinstance(task, ClassificationTask) and len(ref):
        def labels(z: np.ndarray) -> np.ndarray:
            return decide(softmax(z), decision)

        agreement = float((labels(ours) == labels(ref)).mean())
    return Parity(max_abs_diff=diff, agreement=agreement, n=len(ref), tolerance=tolerance, reference=reference)


def build_package(ctx: ExportContext, dest: Path, onnx_file: Path, *, task: Task | None = None,
                  example: dict[str, torch.Tensor], output: str, variant: dict[str, Any], reference: np.ndarray,
                  reference_name: str, tolerance: float | None, parent: Path | None = None,
                  extra_metrics: dict[str, Any] | None = None) -> Package:
    """Assemble, check and atomically write a package at `dest`; returns it opened.

    `reference` holds the outputs the package must reproduce on the test split (within `tolerance`, when
    one is given: fp32 exports); a package that fails is never written and the error gives the figures."""
    task = task or ctx.task
    import onnx

    try:
        graph_inputs = {i.name for i in onnx.load(str(onnx_file), load_external_data=False).graph.input}
    except Exception as err:  # protobuf's DecodeError and friends: the file is not an ONNX model
        raise ExportError(f"{onnx_file.name} for {dest.name} is not a readable ONNX model ({err}); nothing was "
                          "written") from None
    example = {k: v for k, v in example.items() if k in graph_inputs}  # e.g. `cat` without categorical columns
    n_out = int(reference.shape[1]) if reference.ndim == 2 else 1
    signature = _signature(ctx, task, example, output, n_out, variant)
    cfg = ctx.run.config
    provenance = {
        "run": ctx.run.id, "run_path": str(ctx.run.path.resolve()), "data_fingerprint": ctx.data.fingerprint,
        "seed": cfg.seed, "config": yaml.safe_load((ctx.run.path / "config.yaml").read_text()),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": _versions(),
        "parent": None if parent is None else {"path": str(parent.resolve()), "sha256": package_digest(parent),
                                               "model_sha256": model_sha256(parent)},
    }
    with atomic_dir(dest) as tmp:
        shutil.copyfile(onnx_file, tmp / "model.onnx")
        files = task.files()
        if "tokenizer.json" in files:
            (tmp / "assets").mkdir()
            (tmp / "assets" / "tokenizer.json").write_bytes(files["tokenizer.json"])
        (tmp / "signature.json").write_text(json.dumps(signature, indent=2) + "\n")
        (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
        (tmp / "metrics.json").write_text("{}\n")
        write_manifest(tmp)
        pkg = Package.open(tmp)  # loads model.onnx in onnxruntime: an unloadable export fails here
        raw_out = pkg.outputs(pkg.prepare(ctx.raw(ctx.test_idx)))
        ours = raw_out.reshape(reference.shape)
        bad = int((~np.isfinite(ours)).any(axis=-1).sum()) if ours.ndim > 1 else int((~np.isfinite(ours)).sum())
        if bad:
            raise ExportError(f"{dest.name} gives non-finite outputs on {bad} of {len(ours)} test rows (e.g. an fp16 "
                              "overflow); nothing was written. Use another method for this model")
        parity = _parity(task, ours, reference, signature["decision"], tolerance, reference_name)
        if tolerance is not None and not parity.max_abs_diff <= tolerance:
            raise ExportError(
                f"parity check failed for {dest.name}: max |output difference| {parity.max_abs_diff:.3g} > "
                f"{tolerance:g} against {reference_name} on {parity.n} test rows (prediction agreement "
                f"{parity.agreement}); nothing was written. Report this with the run's config."
            )
        split = "test" if len(ctx.data.indices("test")) else "val"  # a data set without a test split: val
        metrics = {"test": _score(ctx, task, ours, signature["decision"]), "split": split, "parity": parity.as_dict(),
                   "run": _run_test_metrics(ctx.run)} | (extra_metrics or {})
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (tmp / REFERENCE).write_text(json.dumps(_reference(ctx, pkg, raw_out)) + "\n")
        write_manifest(tmp)
        Package.open(tmp)  # the manifest verifies
    return Package.open(dest)


def _reference(ctx: ExportContext, pkg: Package, heldout_outputs: np.ndarray) -> dict[str, Any]:
    """reference.json: input signals of up to REFERENCE_ROWS training rows (a seeded sample), prediction signals
    of the held-out outputs just computed (runtime/reference.py says why)."""
    train = ctx.data.indices("train")
    if len(train) > REFERENCE_ROWS:
        train = np.sort(np.random.default_rng(ctx.run.config.seed).choice(train, REFERENCE_ROWS, replace=False))
    return build_reference(pkg.predictor, pkg.prepare(ctx.raw(train)), pkg.transform(heldout_outputs))


def _run_test_metrics(run: Run) -> dict[str, Any] | None:
    """The run's own test metrics, for comparison; a run without metrics.json has none (a corrupt one raises)."""
    if not (run.path / "metrics.json").exists():
        return None
    return run.metrics.get("test")
