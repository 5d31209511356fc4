"""Release, promote, rollback: moving the `production` and `canary` aliases, behind gates (docs/registry.md).

A release compares the candidate with what is live now, on the model's frozen holdout (the same rows for every
version), with the gates of `shipml.registry.gates`. The holdout is frozen at the first release: the test
split of the first version's run, or a file the user gives. Every move of an alias and its event commit
together (`Catalog.update_aliases`), so a killed process leaves the catalog as it was or as it should be.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipml.errors import RegistryError
from shipml.registry.gates import DEFAULT_GATES, GateReport, parse_gates, run_gates
from shipml.registry.holdout import (
    Holdout,
    check_holdout,
    holdout_from_file,
    holdout_from_run,
    holdout_outputs,
    open_holdout,
    put_holdout,
)
from shipml.registry.names import check_name, check_version
from shipml.runtime import Package

if TYPE_CHECKING:
    from shipml.registry._api import Registry

__all__ = ["ReleaseResult", "promote", "release", "rollback"]


@dataclass(frozen=True)
class ReleaseResult:
    """What a release did: the gate report, and the alias it moved (None when the gates blocked it)."""

    name: str
    version: int
    alias: str | None
    weight: int | None
    report: GateReport
    forced: bool


def _configured(pkg: Package) -> dict[str, Any]:
    """The `release:` section of the run's resolved config recorded in the package's provenance ({} if none)."""
    config = pkg.provenance.get("config") if isinstance(pkg.provenance, dict) else None
    section = config.get("release") if isinstance(config, dict) else None
    return section if isinstance(section, dict) else {}


def _holdout(reg: Registry, name: str, pkg: Package, given: str | os.PathLike[str] | None) -> Holdout:
    """The model's frozen holdout; at its first release: `given` (a file) or the first version's run test split."""
    digest = reg.catalog.holdout(name)
    if digest is not None:
        if given is not None and holdout_from_file(Path(given), pkg.signature).digest == digest:
            return open_holdout(reg.store, digest)  # the same rows again (a retried first release): fine
        if given is not None:
            raise RegistryError(f"model {name!r} has a frozen holdout already ({digest[:12]}); every version is "
                                "compared on those rows, so --holdout is only taken at the first release")
        return open_holdout(reg.store, digest)
    if given is not None:
        holdout = holdout_from_file(Path(given), pkg.signature)
    else:
        run_path = pkg.provenance.get("run_path") if isinstance(pkg.provenance, dict) else None
        if not run_path or not Path(run_path).is_dir():
            raise RegistryError(f"the first release of {name!r} needs a holdout: the run this package came from "
                                f"({run_path or 'unknown'}) is not on this machine; give one with --holdout FILE")
        holdout = holdout_from_run(run_path)
    check_holdout(holdout, pkg.signature)
    digest = put_holdout(reg.store, holdout)
    reg.catalog.set_holdout(name, digest)  # store first, catalog second: never points at a missing holdout
    return holdout


def release(reg: Registry, name: str, version: int | str, *, canary: int | None = None,
            gates: list[str] | None = None, holdout: str | os.PathLike[str] | None = None, force: bool = False,
            reason: str | None = None, allow_signature_change: bool = False, measure: bool = True,
            alpha: float | None = None) -> ReleaseResult:
    """Gate `version` against production on the holdout; if it passes (or `force` with a `reason`), make it
    production, or the canary with `canary` percent of traffic. A blocked release raises a RegistryError with
    the gate table; its report is logged as a `gate` event either way. `gates` / `alpha` default to the
    `release:` section of the config the version's run was trained with, then to DEFAULT_GATES / 0.05."""
    name, number = check_name(name), check_version(version)
    if force and not (reason and reason.strip()):
        raise RegistryError("--force needs --reason: a forced release is logged with who, when and why")
    if canary is not None and (isinstance(canary, bool) or not 0 < int(canary) <= 100):
        raise RegistryError(f"--canary {canary!r}: give the percent of traffic for the canary, 1 to 100")
    v = reg.catalog.version(name, number)
    candidate = Package.open(reg.store.open(v.digest))
    configured = _configured(candidate)  # the run's shipml.yaml `release:` section, as exported
    specs = parse_gates(gates if gates is not None else configured.get("gates") or DEFAULT_GATES)
    alpha = alpha if alpha is not None else float(configured.get("alpha") or 0.05)
    frozen = _holdout(reg, name, candidate, holdout)
    live = reg.catalog.aliases(name).get("production")
    production = prod_outputs = None
    if live is not None and live.version != number:
        prod_digest = reg.catalog.version(name, live.version).digest
        production = Package.open(reg.store.open(prod_digest))
        prod_outputs = holdout_outputs(reg.store, prod_digest, frozen)  # cached after its own release
    report = run_gates(candidate, holdout_outputs(reg.store, v.digest, frozen), production, prod_outputs, frozen,
                       specs, alpha=alpha, allow_signature_change=allow_signature_change, measure=measure)
    against = None if live is None else live.version
    reg.catalog.log_event(name, "gate", version=number, details={"against": against, **report.to_dict()})
    if not report.passed and not force:
        failed = [r for r in report.results if not r.passed]
        lines = "; ".join(f"{r.name}: {r.verdict} (candidate {r.candidate}, production {r.production}, "
                          f"{r.margin})" for r in failed)
        raise RegistryError(f"release of {name} v{number} blocked by {len(failed)} gate(s): {lines}. Fix the "
                            "candidate, or release anyway with --force --reason '...' (logged)")
    alias = "canary" if canary is not None else "production"
    changes: dict[str, tuple[int, int | None] | None] = {alias: (number, int(canary) if canary is not None else None)}
    if alias == "production" and "canary" in reg.catalog.aliases(name):
        changes["canary"] = None  # a new production ends any canary
    details: dict[str, Any] = {"gates_passed": report.passed, "against": against}
    reg.catalog.update_aliases(name, changes, event="force" if force and not report.passed else "release",
                               why=reason, details=details, expect={"production": against})
    return ReleaseResult(name, number, alias, changes[alias][1] if changes[alias] else None, report,
                         force and not report.passed)


def promote(reg: Registry, name: str, *, reason: str | None = None) -> int:
    """The canary becomes production (its gates ran when it was released as canary); one atomic step."""
    name = check_name(name)
    canary = reg.catalog.aliases(name).get("canary")
    if canary is None:
        raise RegistryError(f"model {name!r} has no canary to promote; release one with `shipml release {name} N "
                            "--canary 10`")
    reg.catalog.update_aliases(name, {"production": (canary.version, None), "canary": None}, event="promote",
                               why=reason)
    return canary.version


def rollback(reg: Registry, name: str, *, reason: str | None = None) -> int:
    """Production goes back to the version it pointed at before its last change (any canary is dropped)."""
    name = check_name(name)
    live = reg.catalog.aliases(name).get("production")
    if live is None:
        raise RegistryError(f"model {name!r} has no production version to roll back")
    previous = None
    for event in reversed(reg.catalog.history(name)):
        if event.kind == "rollback":  # a second rollback goes further back, it does not undo the first
            continue
        moved = (event.details.get("aliases") or {}).get("production") if event.details else None
        if moved and (moved.get("to") or {}).get("version") == live.version:
            previous = (moved.get("from") or {}).get("version")
            break
    if previous is None:
        raise RegistryError(f"{name} v{live.version} was the first production version: there is nothing to roll "
                            "back to")
    changes: dict[str, tuple[int, int | None] | None] = {"production": (previous, None)}
    if "canary" in reg.catalog.aliases(name):
        changes["canary"] = None
    reg.catalog.update_aliases(name, changes, event="rollback", why=reason)
    return previous
