"""The `shipml` command: parse arguments, call the stage, print. No logic lives here."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from shipml._console import Reporter
from shipml.cli_ship import COMMANDS, Quiet
from shipml.errors import ShipmlError, ShipmlWarning

app = typer.Typer(
    name="shipml",
    help="From a labeled dataset to a trained, evaluated, compressed, exported model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RunDir = Annotated[Path, typer.Argument(help="A run directory, e.g. runs/digits-20260101-120000-ab12.")]


@app.command()
def quickstart(
    workdir: Annotated[Path, typer.Option(help="Where the data, runs and report go.")] = Path("shipml-quickstart"),
    quiet: Quiet = False,
) -> None:
    """Train, evaluate, report, export and compress a digit classifier on scikit-learn's bundled digits (no
    network); prints the frontier of the compressed variants."""
    from shipml.quickstart import run_quickstart

    run_quickstart(workdir, quiet=quiet)


@app.command()
def init(
    data: Annotated[str, typer.Option("--data", help="A table file, image folder, archive or sklearn:<name>.")],
    task: Annotated[str | None, typer.Option("--task", help="Task name (default: inferred).")] = None,
    name: Annotated[str | None, typer.Option(help="Run name (default: from the data).")] = None,
) -> None:
    """Print a commented shipml.yaml inferred from the data: `shipml init --data X > shipml.yaml`."""
    from shipml.scaffold import init_config

    sys.stdout.write(init_config(data, task=task, name=name))


@app.command()
def train(
    config: Annotated[Path | None, typer.Argument(help="shipml.yaml to train from.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field: --set train.epochs=3.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue an interrupted run directory.")] = None,
    nproc: Annotated[int | None, typer.Option(help="Train on N processes on this machine (torchrun); "
                                              "train.batch_size stays the global batch.")] = None,
    backend: Annotated[str, typer.Option(help="With --nproc: gloo (CPU), nccl (one GPU per process) or auto "
                                         "(nccl where GPUs are visible).")] = "auto",
    quiet: Quiet = False,
) -> None:
    """Train a model from a config (or --resume a run); evaluates and writes the report at the end. Under
    torchrun (or with --nproc) rank 0 writes the run and prints; the other processes train their share."""
    from shipml.training import distributed

    if resume is not None:
        if config is not None or set_:
            raise ShipmlError("--resume takes no config or --set: a run continues with its recorded config")
    elif config is None:
        raise ShipmlError("give a config file (`shipml train shipml.yaml`) or --resume RUN_DIR")
    chosen = distributed.choose_backend(backend)  # nccl without GPUs: an error before anything starts
    if nproc is not None and nproc != 1:
        distributed.check_nproc(nproc, chosen)
        if config is not None:  # a config mistake is told once, here, not by every process
            from shipml.config import load_config

            load_config(config, overrides=set_ or [])
        args = ["train", *([str(config)] if config is not None else ["--resume", str(resume)])]
        args += [a for s in set_ or [] for a in ("--set", s)] + (["--quiet"] if quiet else [])
        raise typer.Exit(distributed.launch(nproc, args, chosen))
    if not distributed.world().main:  # a torchrun process other than rank 0: rank 0 owns the run directory
        try:
            distributed.follow(config, set_ or [], resume)
        except distributed.FollowerStop:
            raise typer.Exit(2) from None  # rank 0 printed why
        except ShipmlError as err:  # this process's own trouble (e.g. its machine lacks the data): say who
            raise ShipmlError(f"process {distributed.world().rank}: {err}") from None
        return
    from shipml.run import Run
    from shipml.run import train as train_run

    run = Run.resume(resume, quiet=quiet) if resume is not None else train_run(config, overrides=set_ or [],
                                                                                quiet=quiet)
    typer.echo(str(run.path))


@app.command()
def evaluate(run: RunDir, quiet: Quiet = False) -> None:
    """Re-score a run's model and its baseline on the test split (writes metrics.json)."""
    from shipml.run import Run

    Run(run).evaluate(quiet=quiet)
    typer.echo(str(run / "metrics.json"))


@app.command()
def predict(
    source: Annotated[Path, typer.Argument(help="A run directory, or a package (runs/<id>/package, "
                                           "runs/<id>/variants/<name>).")],
    inputs: Annotated[str, typer.Argument(help="Table file (tabular and text tasks), image file/folder (image "
                                          "tasks), email file/folder (text tasks).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write CSV here (default: stdout).")] = None,
) -> None:
    """Predict: one row per input, with the label and class probabilities. A package runs through
    onnxruntime alone (torch is not imported); a run directory uses its PyTorch model."""
    if not source.exists():
        raise ShipmlError(f"{source} does not exist; give a run directory (runs/<id>) or a package folder "
                          "(runs/<id>/package, runs/<id>/variants/<name>)")
    with warnings.catch_warnings(record=True) as caught:  # shown as the CLI's warnings, not as Python's
        warnings.simplefilter("always", ShipmlWarning)
        if (source / "signature.json").is_file():
            from shipml.runtime import Package

            frame = Package.open(source).predict(inputs)
        else:
            from shipml.run import Run

            frame = Run(source).predict(inputs)
    for w in caught:
        if issubclass(w.category, ShipmlWarning):
            Reporter().warn(str(w.message))
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if output is None:
        frame.to_csv(sys.stdout, index=False)
    else:
        if not output.parent.is_dir():
            raise ShipmlError(f"--output {output}: the folder {output.parent} does not exist")
        from shipml.core.files import atomic_write_bytes

        atomic_write_bytes(output, frame.to_csv(index=False).encode())  # a reader never sees half a file
        typer.echo(str(output))


@app.command()
def generate(
    source: Annotated[Path, typer.Argument(help="An image-generation run directory, or its package.")],
    class_: Annotated[str | None, typer.Option("--class", help="The class to draw (a conditional generator); "
                                               "leave out for an unconditional one.")] = None,
    n: Annotated[int, typer.Option("--n", help="How many images (1-1024).")] = 64,
    seed: Annotated[int, typer.Option(help="Noise seed: the same seed draws the same images.")] = 0,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG to write: one image for --n 1, else a grid.")
                      ] = Path("generated.png"),
) -> None:
    """Draw new images from an image-generation run (PyTorch) or its package (onnxruntime alone); the same seed
    draws the same images from both."""
    from shipml.runtime.generate import grid_png, png

    if not source.exists():
        raise ShipmlError(f"{source} does not exist; give an image-generation run directory (runs/<id>) or its "
                          "package (runs/<id>/package)")
    if not output.parent.is_dir():
        raise ShipmlError(f"--output {output}: the folder {output.parent} does not exist")
    if (source / "signature.json").is_file():
        from shipml.runtime import Package

        images = Package.open(source).generate(class_, n, seed)
    else:
        from shipml.run import Run

        run = Run(source)
        if run.task.kind != "generation":
            raise ShipmlError(f"{source} is a {run.task.name} run; `shipml generate` needs an image-generation run")
        images = run.generate(class_, n, seed)
    from shipml.core.files import atomic_write_bytes

    atomic_write_bytes(output, png(images[0]) if n == 1 else grid_png(images))
    typer.echo(str(output))


@app.command()
def export(
    run: RunDir,
    out: Annotated[Path | None, typer.Option("--out", help="Where to write (default: RUN/package, or RUN/triton "
                                             "for --format triton).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="onnx: a shipml package; triton: also a Triton model "
                                     "repository (<name>/config.pbtxt + <name>/1/model.onnx).")] = "onnx",
    name: Annotated[str | None, typer.Option(help="Triton model name (default: the run's name).")] = None,
    quiet: Quiet = False,
) -> None:
    """Export a finished run as a package (ONNX + signature + assets), checked for parity on the test split."""
    from shipml.export import export_run

    typer.echo(str(export_run(run, out, fmt=fmt, name=name, quiet=quiet)))


@app.command()
def compress(
    run: RunDir,
    methods: Annotated[str | None, typer.Option(help="Comma-separated variants: int8, fp16, prune, distill, or "
                                                "chains like distill+int8 (default: compress.methods).")] = None,
    target: Annotated[str | None, typer.Option(help='Pick the fastest variant meeting constraints, e.g. '
                                               '"p99_ms<=15, accuracy_drop<=0.005".')] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field: --set compress.prune.ratio=0.5."
                                                   )] = None,
    fresh: Annotated[bool, typer.Option(help="Rebuild variants that are already on disk.")] = False,
    quiet: Quiet = False,
) -> None:
    """Make compressed variants of a run's model, measure them all (the frontier) and optionally pick one."""
    from shipml.compress import compress_run

    result = compress_run(run, methods=methods, target=target, overrides=set_ or [], fresh=fresh, quiet=quiet)
    typer.echo(str(result.path))
    if result.selected is not None:
        typer.echo(result.selected["path"])
    elif result.message is not None:  # a target (from --target or compress.target) that nothing met
        raise typer.Exit(1)


@app.command()
def report(run: RunDir) -> None:
    """(Re)write a run's self-contained HTML report."""
    from shipml.run import Run

    typer.echo(str(Run(run).report()))


datasets_app = typer.Typer(help="Public data sets, fetched with integrity checks.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("fetch")
def datasets_fetch(
    name: Annotated[str, typer.Argument(help="Data set name, see `shipml datasets list`.")],
    to: Annotated[Path, typer.Option("--to", help="New folder to write (must not exist or be empty).")],
    from_dir: Annotated[Path | None, typer.Option("--from", help="Folder holding the official archives "
                                                  "(a local mirror); default: download them.")] = None,
    quiet: Quiet = False,
) -> None:
    """Fetch a public data set into a folder, verifying every item; prints what was found."""
    from shipml._console import Reporter
    from shipml.data import fetch_dataset

    reporter = Reporter(quiet=quiet)
    report = fetch_dataset(name, to, from_dir=from_dir, log=reporter.info).to_dict()
    labels = ", ".join(f"{k} {v}" for k, v in report.get("labels", {}).items())
    reporter.info(f"{report['messages']} items ({labels}) in {report['seconds']:.1f}s")
    for note in report.get("notes", []):
        reporter.warn(note)
    typer.echo(str(report["to"]))


@datasets_app.command("list")
def datasets_list() -> None:
    """The data sets `shipml datasets fetch` knows."""
    from shipml.data import list_fetchers

    for name in list_fetchers():
        typer.echo(name)


@app.command()
def tasks() -> None:
    """List the registered task families."""
    from shipml.tasks import get_task_class, list_tasks

    for name in list_tasks():
        cls = get_task_class(name)
        typer.echo(f"{name:24s} {cls.kind:15s} {cls.data_kind:7s} {(cls.__doc__ or '').strip().splitlines()[0]}")


# optional dependencies -> the extra that installs them (pyproject.toml)
_EXTRAS = {"torch": "train", "accelerate": "train", "safetensors": "train", "onnx": "train", "transformers": "text",
           "fastapi": "serve", "uvicorn": "serve", "prometheus_client": "serve", "psycopg": "postgres", "s3fs": "s3",
           "optuna": "tune"}


for _command in COMMANDS:  # register, release, promote, rollback, models, history, show, serve, monitor, tune
    app.command()(_command)


def main() -> None:
    """Entry point: user errors print one clear message (no traceback) and exit 2."""
    try:
        code = app(standalone_mode=False)  # a command's typer.Exit(n) comes back as n in this mode
        if isinstance(code, int) and code:
            sys.exit(code)
    except ShipmlError as err:
        typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except ModuleNotFoundError as err:
        extra = _EXTRAS.get((err.name or "").split(".")[0])
        if extra is None:
            raise
        typer.secho(f"error: this command needs {err.name}, which the base install leaves out: pip install "
                    f"'shipml[{extra}]'", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as err:  # click usage errors arrive here in standalone_mode=False (typer may vendor click)
        if callable(getattr(err, "show", None)) and isinstance(getattr(err, "exit_code", None), int):
            err.show()
            sys.exit(err.exit_code)
        raise


if __name__ == "__main__":
    main()
