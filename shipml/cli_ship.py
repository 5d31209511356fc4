"""The `shipml` commands that ship a model: register / release / promote / rollback / models / history / show
(the registry), serve and monitor (the server), tune (the search). Split from cli.py along that seam: plain
functions, which cli.py adds to its Typer app (`COMMANDS`). Parse, call, print: no logic lives here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shipml._console import table

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors (for scripts and CI).")]

# ---------------------------------------------------------------------------------------------- registry
Registry_ = Annotated[Path | None, typer.Option("--registry", help="Registry folder (default: $SHIPML_REGISTRY or "
                                                "~/.shipml/registry); $SHIPML_REGISTRY_URL / $SHIPML_STORE_URL "
                                                "put the catalog in PostgreSQL and the store under an fsspec URL.")]


def _registry(root: Path | None) -> Any:
    from shipml.registry import Registry

    return Registry(root)


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
    table(f"{name} v{got.version}: gates{note}", ["gate", "candidate", "production", "required", "verdict"],
           got.report.rows())
    where = f"canary ({got.weight}% of traffic)" if got.alias == "canary" else "production"
    typer.echo(f"{name} v{got.version} is {where}" + (" (forced past failed gates)" if got.forced else ""))


def promote(name: Annotated[str, typer.Argument(help="Model name.")],
            reason: Annotated[str | None, typer.Option(help="Why (kept in the event log).")] = None,
            registry: Registry_ = None) -> None:
    """Make the canary production (one atomic step, logged)."""
    with _registry(registry) as reg:
        typer.echo(f"{name} v{reg.promote(name, reason=reason)} is production")


def rollback(name: Annotated[str, typer.Argument(help="Model name.")],
             reason: Annotated[str | None, typer.Option(help="Why (kept in the event log).")] = None,
             registry: Registry_ = None) -> None:
    """Put production back to the version it pointed at before (one atomic step, logged)."""
    with _registry(registry) as reg:
        typer.echo(f"{name} v{reg.rollback(name, reason=reason)} is production again")


def models(registry: Registry_ = None) -> None:
    """The registered models, their newest version and where production and canary point."""
    with _registry(registry) as reg:
        rows = [[m.name, str(m.latest or "-"), *(str(m.aliases.get(a, "-")) for a in ("production", "canary")),
                 m.created.strftime("%Y-%m-%d %H:%M")] for m in reg.models()]
    table("models", ["model", "latest", "production", "canary", "created"], rows)


def history(name: Annotated[str, typer.Argument(help="Model name.")], registry: Registry_ = None) -> None:
    """A model's versions and its append-only event log (register, release, promote, rollback, ...)."""
    with _registry(registry) as reg:
        versions = reg.versions(name)
        events = reg.history(name)
    table(f"{name}: versions", ["version", "digest", "created", "author", "note"],
           [[str(v.number), v.digest[:12], v.created.strftime("%Y-%m-%d %H:%M"), v.author, v.note] for v in versions])
    table(f"{name}: events", ["when", "event", "version", "who", "why"],
           [[e.at.strftime("%Y-%m-%d %H:%M:%S"), e.kind, str(e.version or "-"), e.who, e.why or ""] for e in events])


def show(name: Annotated[str, typer.Argument(help="Model name.")],
         version: Annotated[str, typer.Argument(help="Version number.")], registry: Registry_ = None) -> None:
    """One version: its package digest, signature, test metrics and provenance, as JSON."""
    import json

    with _registry(registry) as reg:
        v = reg.version(name, version)
    typer.echo(json.dumps({"model": v.model, "version": v.number, "digest": v.digest, "created": v.created.isoformat(),
                           "author": v.author, "note": v.note, "signature": v.signature, "metrics": v.metrics,
                           "provenance": v.provenance}, indent=2))



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
    sessions: Annotated[int | None, typer.Option(help="onnxruntime sessions per version (default: 2 where a worker "
                                                 "has 2 or more cores, else 1).")] = None,
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


COMMANDS = [register, release, promote, rollback, models, history, show, serve, monitor, tune]
