"""`Registry`: the store and the catalog together — what `shipml register / models / show / history` and the
Python API share (one implementation, docs/registry.md).

Order of writes: the package goes into the store first (verified, content-addressed, atomic), the catalog row
second. A process killed in between leaves an unreferenced package in the store, which the next register of
the same package reuses; the catalog never points at a missing or partial package.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipml.errors import RegistryError, ShipmlError
from shipml.registry.catalog import Catalog, Event, ModelInfo, VersionInfo
from shipml.registry.names import check_name, check_version
from shipml.registry.store import Store
from shipml.runtime import Package

__all__ = ["Registered", "Registry", "default_root", "resolve_package"]


def default_root() -> Path:
    """`$SHIPML_REGISTRY` if set, else ~/.shipml/registry: the store (`store/`) and the SQLite catalog file."""
    return Path(os.environ.get("SHIPML_REGISTRY") or Path.home() / ".shipml" / "registry").expanduser()


@dataclass(frozen=True)
class Registered:
    """The outcome of a register: `new` is False when this exact package was already that version."""

    name: str
    version: int
    digest: str
    new: bool


def _frontier_pick(run_dir: Path) -> Path:
    path = run_dir / "frontier.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise RegistryError(f"{run_dir} has no frontier.json: run `shipml compress {run_dir} --target ...` first, or "
                            "name a variant with --variant") from None
    except (OSError, ValueError) as err:
        raise RegistryError(f"{path} is not valid JSON ({err}); run `shipml compress` again") from None
    selected = doc.get("selected") if isinstance(doc, dict) else None
    if not selected:
        raise RegistryError(f"{path} picked no package (its --target was not met or not given); name a variant "
                            "with --variant")
    return run_dir / "package" if selected == "fp32" else run_dir / "variants" / str(selected)


def resolve_package(source: str | os.PathLike[str], variant: str | None = None) -> Path:
    """A package folder from what a user names: a package folder itself, or a run directory (its `package/`;
    `variant="int8"`: `variants/int8/`; `variant="target"`: the package `compress --target` picked)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise RegistryError(f"{path} does not exist; give a package folder (runs/<id>/package, "
                            "runs/<id>/variants/<name>) or a run directory")
    if (path / "signature.json").is_file():
        if variant is not None:
            raise RegistryError(f"{path} is a package already; --variant only applies to a run directory")
        return path
    if not (path / "config.yaml").is_file():
        raise RegistryError(f"{path} is neither a package (no signature.json) nor a run directory (no config.yaml)")
    if variant is None:
        folder = path / "package"
    elif variant == "target":
        folder = _frontier_pick(path)
    else:
        folder = path / "package" if variant == "fp32" else path / "variants" / variant
    if not (folder / "signature.json").is_file():
        built = sorted(p.name for p in (path / "variants").iterdir()) if (path / "variants").is_dir() else []
        raise RegistryError(f"{folder} is not a package; export the run first (`shipml export {path}`) or pick one "
                            f"of the built variants: {', '.join(built) or 'none yet'}")
    return folder


def _default_name(pkg: Package) -> str:
    config = pkg.provenance.get("config") if isinstance(pkg.provenance, dict) else None
    name = config.get("name") if isinstance(config, dict) else None
    if not name:
        raise RegistryError(f"{pkg.path} records no run name; give one with --name")
    return check_name(name)


class Registry:
    """A registry root: the package store and the catalog. `root` defaults to `default_root()`; `url` (or
    `SHIPML_REGISTRY_URL`) puts the catalog in PostgreSQL; `store` (or `SHIPML_STORE_URL`) puts packages under
    an fsspec URL such as `s3://bucket/shipml` — what many machines share (docs/registry.md)."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *, url: str | None = None,
                 store: str | None = None, storage_options: dict[str, Any] | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()
        store_url = store or os.environ.get("SHIPML_STORE_URL") or str(self.root / "store")
        if "://" not in store_url:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise RegistryError(f"cannot create the registry folder {self.root} ({err.strerror or err}); set "
                                    "SHIPML_REGISTRY to a writable folder") from None
        self.store = Store(store_url, storage_options=storage_options)
        self.catalog = Catalog(url, root=self.root)

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------- writing
    def register(self, source: str | os.PathLike[str], *, name: str | None = None, variant: str | None = None,
                 author: str | None = None, note: str = "") -> Registered:
        """Store a package (verified: manifest, no pickles) and make it the next version of `name` (default: the
        run's name). The same package registered again returns its existing version."""
        folder = resolve_package(source, variant)
        try:
            pkg = Package.open(folder)  # the runtime's own check: manifest, signature values
        except ShipmlError as err:
            raise RegistryError(f"cannot register {folder}: {err}") from None
        name = check_name(name) if name is not None else _default_name(pkg)
        digest = self.store.put(folder)
        latest = next((m.latest for m in self.catalog.models() if m.name == name), None)
        number = self.catalog.add_version(name, digest, signature=pkg.signature, metrics=pkg.metrics,
                                          provenance=pkg.provenance, author=author, note=note)
        return Registered(name, number, digest, latest is None or number > latest)  # idempotent: an old number

    # ------------------------------------------------------------------------------------------- reading
    def models(self) -> list[ModelInfo]:
        return self.catalog.models()

    def versions(self, name: str) -> list[VersionInfo]:
        return self.catalog.versions(check_name(name))

    def version(self, name: str, number: int | str) -> VersionInfo:
        return self.catalog.version(check_name(name), check_version(number))

    def history(self, name: str) -> list[Event]:
        return self.catalog.history(check_name(name))

    def package(self, name: str, number: int | str) -> Package:
        """The registered package of a version, verified on open, ready to predict."""
        v = self.version(name, number)
        return Package.open(self.store.open(v.digest))

    # ------------------------------------------------------------------------------------------ releasing
    def release(self, name: str, version: int | str, **kwargs: Any) -> Any:
        """Gate a version against production and move the alias (see `shipml.registry.release.release`)."""
        from shipml.registry.release import release

        return release(self, name, version, **kwargs)

    def promote(self, name: str, *, reason: str | None = None) -> int:
        from shipml.registry.release import promote

        return promote(self, name, reason=reason)

    def rollback(self, name: str, *, reason: str | None = None) -> int:
        from shipml.registry.release import rollback

        return rollback(self, name, reason=reason)
