"""`shipml compress`: build the variants a run asks for, measure them all, optionally pick one by target.

Variant names are method chains: `int8`, `prune`, `distill`, `distill+int8` (a model step — prune or
distill — first, then graph steps). Each variant is a full package in `runs/<id>/variants/<name>/`;
a chain's intermediate steps are variants too. A variant already on disk is reused when it was built
from the same parent package with the same recipe (so `--target` after `--methods` measures, it does
not retrain); `fresh=True` rebuilds.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipml._console import Reporter
from shipml.compress._registry import get_compressor_class
from shipml.compress.frontier import add_relative, frontier_row, print_frontier, save_frontier, write_inputs
from shipml.compress.target import LOWER_IS_BETTER, SPEED, parse_target, pick
from shipml.config import CompressConfig
from shipml.core.files import temp_name
from shipml.errors import ConfigError, ExportError
from shipml.export import ExportContext, build_package, export_onnx, export_run, load_context, remove_stale_temps
from shipml.export.package import FP32_TOLERANCE, example_batch, model_sha256, reference_outputs
from shipml.run import Run
from shipml.runtime import Package

__all__ = ["CompressResult", "compress_run", "parse_methods"]


@dataclass
class CompressResult:
    rows: list[dict[str, Any]]
    headline: str
    selected: dict[str, Any] | None
    message: str | None
    path: Path  # frontier.json


def parse_methods(methods: list[str] | str) -> list[list[str]]:
    """"int8,prune,distill+int8" -> [["int8"], ["prune"], ["distill", "int8"]], validated."""
    items = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods) if m.strip()]
    if not items:
        raise ConfigError("no compression methods given; e.g. --methods int8,prune,distill")
    chains = []
    for item in items:
        steps = [s.strip() for s in item.split("+")]
        stages = [get_compressor_class(s).stage for s in steps]  # unknown names raise, listing the valid ones
        if "model" in stages[1:]:
            raise ConfigError(f"method {item!r}: prune and distill make a new model, so they can only come first "
                              "in a chain (e.g. distill+int8)")
        chains.append(steps)
    return chains


def _reusable(dest: Path, parent: Path, recipe: dict[str, Any]) -> Package | None:
    try:
        pkg = Package.open(dest)
    except ExportError:
        return None
    prov = pkg.provenance.get("parent") or {}
    same_parent = prov.get("model_sha256") == model_sha256(parent)
    return pkg if same_parent and pkg.signature["variant"].get("recipe") == recipe else None


def _original(ctx: ExportContext, reporter: Reporter, fresh: bool) -> Package:
    dest = ctx.run.path / "package"
    if not fresh:
        try:
            pkg = Package.open(dest)
            if pkg.provenance.get("data_fingerprint") == ctx.data.fingerprint:
                return pkg
        except ExportError:
            pass
    reporter.info("exporting the fp32 package first")
    return Package.open(export_run(ctx.run, ctx=ctx, quiet=reporter.quiet))


def _build_step(ctx: ExportContext, cfg: CompressConfig, name: str, step: str, parent: Package, reporter: Reporter,
                fresh: bool) -> Package:
    dest = ctx.run.path / "variants" / name
    comp = get_compressor_class(step)(cfg)
    recipe = comp.recipe(ctx)
    if not fresh and (pkg := _reusable(dest, parent.path, recipe)) is not None:
        reporter.info(f"{name}: reusing {dest}")
        return pkg
    reporter.info(f"{name}: building")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=temp_name(f"{name}-work"), dir=dest.parent) as work:
        onnx_file = Path(work) / "model.onnx"
        if comp.stage == "model":
            model, task, params = comp.make_model(ctx, Path(work) / "train", reporter)
            example = example_batch(ctx, task)
            _, output = export_onnx(model, task, example, onnx_file)
            reference, ref_name, tol = reference_outputs(model, ctx, task), f"the {step} PyTorch model", FP32_TOLERANCE
        else:
            task, example = ctx.task, example_batch(ctx)
            params = comp.make_graph(ctx, parent, onnx_file, reporter)
            output = parent.signature["outputs"][0]["name"]
            reference = parent.outputs(parent.prepare(ctx.raw(ctx.test_idx)))
            ref_name, tol = f"the {parent.variant} package", None
        variant = {"name": name, "method": name, "params": params, "recipe": recipe,
                   "steps": [*parent.signature["variant"].get("steps", []), step]}
        return build_package(ctx, dest, onnx_file, task=task, example=example, output=output, variant=variant,
                             reference=reference, reference_name=ref_name, tolerance=tol, parent=parent.path)


def compress_run(run: Run | str | Path, *, methods: list[str] | str | None = None, target: str | None = None,
                 overrides: list[str] | None = None, fresh: bool = False, measure: bool = True,
                 quiet: bool = False) -> CompressResult:
    """Build the variants, measure every package of the run, write frontier.json, pick by `target`."""
    reporter = Reporter(quiet=quiet)
    run = _with_overrides(run if isinstance(run, Run) else Run(run), overrides)
    cfg = run.config.compress
    if methods is None:  # `--target` alone: the variants already built, else the configured methods
        methods = _built(run) or cfg.methods
    chains = parse_methods(methods)
    for step in dict.fromkeys(s for chain in chains for s in chain):  # an unsupported pair fails before any work
        get_compressor_class(step)(cfg).check(run.task)
    target = target if target is not None else cfg.target
    headline = run.task.headline
    if target is not None:  # a typo fails now, not after an hour of distillation
        parse_target(target, _metric_names(run))
    ctx = load_context(run, reporter=reporter)
    remove_stale_temps(run.path, reporter)  # what a compression killed with SIGKILL left (90 MB each for text)
    root = _original(ctx, reporter, fresh)
    packages: dict[str, Package] = {"fp32": root}
    for chain in chains:
        parent = root
        for i in range(len(chain)):
            name = "+".join(chain[: i + 1])
            if name not in packages:
                packages[name] = _build_step(ctx, cfg, name, chain[i], parent, reporter, fresh)
            parent = packages[name]
    if not measure:
        return CompressResult([], headline, None, None, run.path / "frontier.json")
    rows = []
    with tempfile.TemporaryDirectory(prefix=temp_name("frontier"), dir=run.path) as tmp:
        inputs = write_inputs(ctx, Path(tmp))
        for name, pkg in packages.items():
            reporter.info(f"measuring {name}")
            rows.append(frontier_row(pkg, inputs, headline, latency_n=cfg.latency_requests, batch_size=cfg.batch_size))
    quality = {k for k in rows[0] if k in _quality_names(rows[0])}
    add_relative(rows, quality, LOWER_IS_BETTER)
    selected, message = None, None
    if target is not None:
        constraints = parse_target(target, SPEED | quality | {f"{q}_drop" for q in quality})
        selected, message = pick(rows, constraints)
    path = save_frontier(run.path, headline, rows, target, selected["name"] if selected else None, message)
    if not quiet:
        print_frontier(rows, headline, selected["name"] if selected else None)
    if message and selected is not None:
        reporter.info(f"selected {message}: {selected['path']}")
    elif message:
        reporter.warn(f"--target {target!r}: {message}")  # shown even with --quiet: the command exits 1
    return CompressResult(rows, headline, selected, message, path)


def _with_overrides(run: Run, overrides: list[str] | None) -> Run:
    """`run` under its config with `overrides` applied: a shallow copy sharing the loaded task and model, so
    the caller's `Run` keeps the config on disk (a later `run.evaluate()` must not see compress overrides)."""
    if not overrides:
        return run
    from shipml.config import parse_config

    changed = copy.copy(run)
    changed.config = parse_config(run.config.model_dump(mode="json"), overrides=overrides)
    return changed


def _built(run: Run) -> list[str]:
    """Variant names with a package on disk, chains after their first step (so parents come first)."""
    folder = run.path / "variants"
    names = [p.name for p in folder.iterdir() if (p / "signature.json").is_file()] if folder.is_dir() else []
    return sorted(names, key=lambda n: (n.count("+"), n))


def _quality_names(row: dict[str, Any]) -> set[str]:
    skip = SPEED | {"name", "method", "path", "ci_low", "ci_high", "ci_method", "batch_size", "latency_requests",
                    "threads", "parity_max_abs_diff", "parity_agreement"}
    return {k for k, v in row.items() if k not in skip and isinstance(v, float)}


def _metric_names(run: Run) -> set[str]:
    """Metric names a target may use, before anything is measured (from the run's metrics.json). A run not
    evaluated yet offers its headline metric; a damaged metrics.json is an error, not an empty list."""
    quality: set[str] = set()
    path = run.path / "metrics.json"
    if path.is_file():
        try:
            test = run.metrics.get("test", {})
            quality = {k for k, v in test.items() if isinstance(v, dict) and "value" in v}
        except (OSError, ValueError, AttributeError) as err:  # unreadable, not JSON, or not the expected shape
            raise ExportError(f"{path} is damaged ({type(err).__name__}: {err}); re-create it with "
                              f"`shipml evaluate {run.path}`, or delete it") from None
    quality = quality or {run.task.headline}
    return SPEED | quality | {f"{q}_drop" for q in quality}
