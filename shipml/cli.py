"""The `shipml` command: parse arguments, call the stage, print. No logic lives here."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from shipml._console import Reporter
from shipml.errors import ShipmlError, ShipmlWarning

app = typer.Typer(
    name="shipml",
    help="From a labeled dataset to a trained, evaluated, compressed, exported model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors (for scripts and CI).")]
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


# ---------------------------------------------------------------------------------------------- registry
Registry_ = Annotated[Path | None, typer.Option("--registry", help="Registry folder (default: $SHIPML_REGISTRY or "
                                                "~/.shipml/registry); $SHIPML_REGISTRY_URL / $SHIPML_STORE_URL "
                                                "put the catalog in PostgreSQL and the store under an fsspec URL.")]


def _registry(root: Path | None) -> Any:
    from shipml.registry import Registry

    return Registry(root)


def _table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


@app.command()
def register(
    source: Annotated[Path, typer.Argument(help="A package folder, or a run directory (its package/).")],
    name: Annotated[str | None, typer.Option(help="Model name (default: the run's name).")] = None,
    variant: Annotated[str | None, typer.Option(help="With a run directory: a variant (int8, distill+int8, ...) "
                                                "or 'target' (the package `compress --target` picked).")] = None,
    note: Annotated[str, typer.Option(help="A note kept with the version.")] = "",
    registry: Registry_ = None,
) -> None:
    """Register a package as the next version of a model (verified; the same package again is a no-op)."""
    with _registry(registry) as reg:
        got = reg.register(source, name=name, variant=variant, note=note)
    typer.echo(f"{got.name} v{got.version}" + ("" if got.new else " (already registered)"))


@app.command()
def release(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version to release.")],
    canary: Annotated[int | None, typer.Option(help="Release as the canary with this percent of traffic.")] = None,
    gate: Annotated[list[str] | None, typer.Option("--gate", help="A gate, e.g. 'accuracy >= production.accuracy "
                                                   "- 0.002', 'p99_ms <= 20', 'paired' (repeatable; default: "
                                                   "the standard gates).")] = None,
    holdout: Annotated[Path | None, typer.Option(help="The model's evaluation set, at its first release only "
                                                 "(default: the first version's run test split).")] = None,
    force: Annotated[bool, typer.Option(help="Release even if gates block it (needs --reason; logged).")] = False,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the event log).")] = None,
    allow_signature_change: Annotated[bool, typer.Option(help="Allow other inputs, classes or data kind than "
                                                         "production's.")] = False,
    registry: Registry_ = None,
) -> None:
    """Gate a version against production on the model's frozen holdout, then make it production (or canary)."""
    with _registry(registry) as reg:  # a blocked release raises with every failed gate's figures
        got = reg.release(name, version, canary=canary, gates=gate, holdout=holdout, force=force, reason=reason,
                          allow_signature_change=allow_signature_change)
    note = " (first release: absolute gates only, no production to compare with)" if got.report.first_release else ""
    _table(f"{name} v{got.version}: gates{note}", ["gate", "candidate", "production", "required", "verdict"],
           got.report.rows())
    where = f"canary ({got.weight}% of traffic)" if got.alias == "canary" else "production"
    typer.echo(f"{name} v{got.version} is {where}" + (" (forced past failed gates)" if got.forced else ""))


@app.command()
def promote(name: Annotated[str, typer.Argument(help="Model name.")],
            reason: Annotated[str | None, typer.Option(help="Why (kept in the event log).")] = None,
            registry: Registry_ = None) -> None:
    """Make the canary production (one atomic step, logged)."""
    with _registry(registry) as reg:
        typer.echo(f"{name} v{reg.promote(name, reason=reason)} is production")


@app.command()
def rollback(name: Annotated[str, typer.Argument(help="Model name.")],
             reason: Annotated[str | None, typer.Option(help="Why (kept in the event log).")] = None,
             registry: Registry_ = None) -> None:
    """Put production back to the version it pointed at before (one atomic step, logged)."""
    with _registry(registry) as reg:
        typer.echo(f"{name} v{reg.rollback(name, reason=reason)} is production again")


@app.command()
def models(registry: Registry_ = None) -> None:
    """The registered models, their newest version and where production and canary point."""
    with _registry(registry) as reg:
        rows = [[m.name, str(m.latest or "-"), *(str(m.aliases.get(a, "-")) for a in ("production", "canary")),
                 m.created.strftime("%Y-%m-%d %H:%M")] for m in reg.models()]
    _table("models", ["model", "latest", "production", "canary", "created"], rows)


@app.command()
def history(name: Annotated[str, typer.Argument(help="Model name.")], registry: Registry_ = None) -> None:
    """A model's versions and its append-only event log (register, release, promote, rollback, ...)."""
    with _registry(registry) as reg:
        versions = reg.versions(name)
        events = reg.history(name)
    _table(f"{name}: versions", ["version", "digest", "created", "author", "note"],
           [[str(v.number), v.digest[:12], v.created.strftime("%Y-%m-%d %H:%M"), v.author, v.note] for v in versions])
    _table(f"{name}: events", ["when", "event", "version", "who", "why"],
           [[e.at.strftime("%Y-%m-%d %H:%M:%S"), e.kind, str(e.version or "-"), e.who, e.why or ""] for e in events])


@app.command()
def show(name: Annotated[str, typer.Argument(help="Model name.")],
         version: Annotated[str, typer.Argument(help="Version number.")], registry: Registry_ = None) -> None:
    """One version: its package digest, signature, test metrics and provenance, as JSON."""
    import json

    with _registry(registry) as reg:
        v = reg.version(name, version)
    typer.echo(json.dumps({"model": v.model, "version": v.number, "digest": v.digest, "created": v.created.isoformat(),
                           "author": v.author, "note": v.note, "signature": v.signature, "metrics": v.metrics,
                           "provenance": v.provenance}, indent=2))



@app.command()
def serve(
    models: Annotated[list[str], typer.Argument(help="Registered model names (production + canary), or package "
                                                "folders (NAME=PATH to name one).")],
    host: Annotated[str, typer.Option(help="Interface to bind; anything but loopback needs SHIPML_API_TOKEN.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes sharing the port.")] = 1,
    max_batch_size: Annotated[int | None, typer.Option(help="Rows per network call (default 32).")] = None,
    max_wait_ms: Annotated[float | None, typer.Option(help="How long a batch waits for more requests "
                                                      "(default 2).")] = None,
    max_queue: Annotated[int | None, typer.Option(help="Queued requests per version before 503 (default 256).")]
    = None,
    max_queue_ms: Annotated[float | None, typer.Option(help="503 when a request's estimated queue wait is longer "
                                                       "(default 2500; 0: off).")] = None,
    deadline_ms: Annotated[float | None, typer.Option(help="A request not started by then gets 504 (default "
                                                      "10000).")] = None,
    sessions: Annotated[int | None, typer.Option(help="onnxruntime sessions per version (default 1).")] = None,
    threads: Annotated[int | None, typer.Option(help="Intra-op threads per session (default: cores / "
                                                "sessions).")] = None,
    poll_s: Annotated[float | None, typer.Option(help="Seconds between reads of the registry's aliases "
                                                 "(default 5; 0: only /admin/reload).")] = None,
    max_body_bytes: Annotated[int | None, typer.Option(help="Larger request bodies get 413 (default 8 MiB).")]
    = None,
    graceful_s: Annotated[float | None, typer.Option(help="On SIGTERM, how long queued and running requests may "
                                                     "take to finish (default 30).")] = None,
    monitor: Annotated[bool, typer.Option(help="Drift and live accuracy per version (docs/monitoring.md).")]
    = True,
    window_rows: Annotated[int | None, typer.Option(help="Monitoring window: rows (default 1000).")] = None,
    window_s: Annotated[float | None, typer.Option(help="Monitoring window: seconds (default 3600).")] = None,
    min_rows: Annotated[int | None, typer.Option(help="No drift flag on fewer rows (default 100).")] = None,
    feedback_capacity: Annotated[int | None, typer.Option(help="Answers remembered for feedback by request id "
                                                          "(default 100000).")] = None,
    registry: Registry_ = None,
) -> None:
    """Serve models over HTTP: OIP v2 + /v1/models/{name}/predict, dynamic batching, hot swap, canary."""
    from shipml.serve import ServeSettings
    from shipml.serve.server import serve as run_server

    settings = ServeSettings.from_env(models=models, host=host, port=port, workers=workers,
                                      max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, max_queue=max_queue,
                                      max_queue_ms=max_queue_ms,
                                      deadline_ms=deadline_ms, sessions=sessions, threads=threads, poll_s=poll_s,
                                      max_body_bytes=max_body_bytes, graceful_s=graceful_s, monitor=monitor,
                                      window_rows=window_rows, window_s=window_s, min_rows=min_rows,
                                      feedback_capacity=feedback_capacity,
                                      registry=str(registry) if registry else None)
    run_server(settings)


@app.command()
def monitor(
    models: Annotated[list[str] | None, typer.Argument(help="Model names (default: every served model).")] = None,
    url: Annotated[str, typer.Option(help="The server (any replica).")] = "http://127.0.0.1:8000",
    token: Annotated[str | None, typer.Option(help="API token (default: $SHIPML_API_TOKEN).")] = None,
    every: Annotated[float, typer.Option(help="Seconds between redraws.")] = 2.0,
    once: Annotated[bool, typer.Option(help="Print one view and exit (for scripts).")] = False,
) -> None:
    """Live view of a running server: traffic, latency, errors, drift per signal, live accuracy per version."""
    import os

    from shipml.serve.console import watch

    watch(url, token or os.environ.get("SHIPML_API_TOKEN"), models, every_s=every, once=once)

@app.command()
def tune(
    config: Annotated[Path | None, typer.Argument(help="The shipml.yaml with a `tune:` section.")] = None,
    trials: Annotated[int | None, typer.Option(help="Trials in the study, all workers together (default: "
                                               "tune.trials).")] = None,
    timeout: Annotated[str | None, typer.Option(help="Stop starting trials after this long: 90s, 30m, 2h.")] = None,
    storage: Annotated[str | None, typer.Option(help="Study database URL, e.g. postgresql+psycopg://host/db for "
                                                "many workers (default: <output_dir>/tune.db).")] = None,
    study: Annotated[str | None, typer.Option(help="Study name (default: the config's name).")] = None,
    show: Annotated[str | None, typer.Option("--show", help="Print a study's leaderboard and importances.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Config override KEY=VALUE (repeatable).")] = None,
    quiet: Quiet = False,
) -> None:
    """Search hyperparameters with Optuna: each trial a run, scored on validation; the best one tested once."""
    from shipml.tune.cli import show_command, tune_command

    if show is not None:
        show_command(show, storage, config)
    elif config is None:
        raise typer.BadParameter("give a config to tune, or --show STUDY")
    else:
        tune_command(config, trials=trials, timeout=timeout, storage=storage, study=study, overrides=set_ or [],
                     quiet=quiet)


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
