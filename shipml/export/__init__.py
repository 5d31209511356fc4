"""The export room: a finished run -> a package (ONNX + signature + assets + metrics + provenance).

    export_run(run, out=None, fmt="onnx") -> Path     `shipml export`: runs/<id>/package/ (or a Triton repo)
    build_package(ctx, dest, onnx_file, ...)           the checked, atomic package writer (compress uses it)
    export_onnx(model, task, example, path)            PyTorch -> ONNX with dynamic batch/sequence axes

The package format itself is defined by its reader, `shipml.runtime` (docs/package.md).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from shipml._console import Reporter
from shipml.core.files import remove_stale, temp_name
from shipml.errors import ExportError
from shipml.export.onnx import export_onnx
from shipml.export.package import (
    FP32_TOLERANCE,
    ExportContext,
    build_package,
    example_batch,
    load_context,
    reference_outputs,
)
from shipml.export.triton import check_triton_name, write_triton_repository
from shipml.run import Run

__all__ = ["ExportContext", "build_package", "check_destination", "export_onnx", "export_run", "load_context",
           "remove_stale_temps", "write_triton_repository"]


def check_destination(dest: Path, run_path: Path, what: str, marks: tuple[str, ...]) -> None:
    """Writing replaces `dest` as a whole: refuse anything there that is not an earlier export of the same
    kind (a user's folder, the run itself), so an export never deletes what it did not write."""
    d, r = dest.resolve(), run_path.resolve()
    if d == r or r.is_relative_to(d):
        raise ExportError(f"--out {dest} would replace the run directory {run_path}; choose a new folder")
    if dest.exists() and not (dest.is_dir() and all((dest / m).is_file() for m in marks)):
        raise ExportError(f"{dest} exists and is not a shipml {what} (no {' / '.join(marks)}); writing there would "
                          "delete it. Choose a new folder, or remove it yourself")

FORMATS = ("onnx", "triton")
# names of temporaries from before `temp_name` carried the writer's pid (removed once older than a few hours)
LEGACY_TEMPS = (".tmp-", ".export-", "-work-", ".frontier-")


def remove_stale_temps(run_path: Path, reporter: Reporter) -> None:
    """An export or compression killed with SIGKILL leaves its temp folders (90 MB each for a text model) in the
    run directory; the next export or compression removes those whose process is gone."""
    removed = []
    for folder in (run_path, run_path / "variants"):
        removed += remove_stale(folder, legacy=LEGACY_TEMPS)
    if removed:
        reporter.info(f"removed {len(removed)} temporary folder(s) left by an interrupted export or compression")


def export_run(run: Run | str | Path, out: str | Path | None = None, *, fmt: str = "onnx", name: str | None = None,
               ctx: ExportContext | None = None, tolerance: float = FP32_TOLERANCE, quiet: bool = False) -> Path:
    """Export a finished run's model as a package (default `runs/<id>/package/`), checked for parity with the
    PyTorch model on the test split. `fmt="triton"` also writes a Triton model repository (default
    `runs/<id>/triton/<name>/`). Returns the package folder (or the Triton model folder)."""
    if fmt not in FORMATS:
        raise ExportError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    reporter = Reporter(quiet=quiet)
    ctx = ctx or load_context(run, reporter=reporter)
    run = ctx.run
    dest = Path(out) if out is not None and fmt == "onnx" else run.path / "package"
    check_destination(dest, run.path, "package", ("signature.json", "MANIFEST.json"))
    repo, name = (Path(out) if out is not None else run.path / "triton"), name or run.config.name
    if fmt == "triton":  # checked before minutes of export work, not after
        check_triton_name(name)
        check_destination(repo / name, run.path, "Triton model", ("config.pbtxt",))
    remove_stale_temps(run.path, reporter)
    if ctx.task.kind == "generation":  # noise + class -> images: its own writer and parity (export/generator.py)
        if fmt == "triton":
            raise ExportError("--format triton is not supported for image-generation runs; export the ONNX package")
        from shipml.export.generator import export_generator

        return export_generator(ctx, dest, reporter)
    model = run.model
    example = example_batch(ctx)
    with tempfile.TemporaryDirectory(prefix=temp_name("export"), dir=run.path) as tmp:
        onnx_file = Path(tmp) / "model.onnx"
        _, output = export_onnx(model, ctx.task, example, onnx_file)
        reference = reference_outputs(model, ctx)
        pkg = build_package(ctx, dest, onnx_file, example=example, output=output,
                            variant={"name": "fp32", "method": "export", "params": {}}, reference=reference,
                            reference_name="the run's PyTorch model (fp32)", tolerance=tolerance)
    p = pkg.metrics["parity"]
    agree = "" if p["agreement"] is None else f", prediction agreement {p['agreement']:.4f}"
    reporter.info(f"package [bold]{dest}[/bold]: parity max |diff| {p['max_abs_diff']:.2e} on {p['n']} test rows"
                  f"{agree}")
    if fmt == "triton":
        folder = write_triton_repository(dest, repo, name)
        reporter.info(f"Triton model repository [bold]{repo}[/bold] (model {folder.name})")
        return folder
    return dest
