"""The versions a server holds, where they come from, and how traffic is split between them.

A *source* says which versions should be live: a registry model (its `production` and `canary` aliases, read
from the catalog; packages opened from the store, verified) or one package folder (version 1, never changes).
`ModelSet.sync` loads what the source names and is not loaded yet, warms it up (a batch of 1 and a full
batch through the whole input path) in a thread, and only then switches the alias to it; a version that fails
to load or warm up never gets traffic, its error is kept for /admin/status and the log, and the old version
keeps serving. A replaced version finishes the requests it holds, then its sessions close.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shipml.errors import ServeError, ShipmlError
from shipml.runtime import Package
from shipml.serve.batcher import Batcher
from shipml.serve.monitor import VersionMonitor
from shipml.serve.settings import ServeSettings

__all__ = ["Loaded", "ModelSet", "PackageSource", "RegistrySource", "Wanted", "warmup_input"]

log = logging.getLogger("shipml.serve")


@dataclass(frozen=True)
class Wanted:
    """What a source wants live for one alias: a version and its package's digest (+ canary weight)."""

    version: int
    digest: str
    weight: int | None = None


class Source(Protocol):
    name: str

    def wanted(self) -> dict[str, Wanted]:
        """{"production": Wanted, ["canary": Wanted]} as the source says now."""

    def open(self, want: Wanted) -> Path:
        """A verified local folder of the package."""


@dataclass
class PackageSource:
    """One package folder served as version 1 of `name`."""

    name: str
    path: Path

    def wanted(self) -> dict[str, Wanted]:
        return {"production": Wanted(1, str(self.path))}

    def open(self, want: Wanted) -> Path:
        return self.path


@dataclass
class RegistrySource:
    """A registered model: versions follow the catalog's aliases; packages come from the store."""

    name: str
    registry: Any  # shipml.registry.Registry (imported by the caller: the registry is optional for a package)

    def wanted(self) -> dict[str, Wanted]:
        aliases = self.registry.catalog.aliases(self.name)
        out = {}
        for alias in ("production", "canary"):
            if alias in aliases:
                a = aliases[alias]
                out[alias] = Wanted(a.version, self.registry.catalog.version(self.name, a.version).digest, a.weight)
        return out

    def open(self, want: Wanted) -> Path:
        return self.registry.store.open(want.digest)


def warmup_input(pkg: Package, rows: int) -> Any:
    """A raw input of `rows` rows that every package of its kind accepts (for warm-up, not for predictions)."""
    prep = pkg.signature["preprocessing"]
    if pkg.data_kind == "text":
        return [("warm up " * (8 << (i % 4))).strip() for i in range(rows)]  # a few lengths: more kernels tuned
    if pkg.data_kind == "images":
        (h, w), c = prep["size"], prep["channels"]
        return np.zeros((rows, h, w, c), dtype=np.uint8)
    row = {s["name"]: s["median"] for s in prep["numeric"]} | {
        s["name"]: (s["categories"][0] if s["categories"] else None) for s in prep["categorical"]}
    return [dict(row) for _ in range(rows)]


@dataclass(eq=False)
class Loaded:
    """One version, warmed up, with its batcher."""

    name: str
    version: int
    digest: str
    packages: list[Package]
    batcher: Batcher
    loaded_at: float = field(default_factory=time.time)
    inflight: int = 0  # requests holding this version (routed, not yet answered)
    retired: bool = False
    monitor: VersionMonitor | None = None

    @property
    def package(self) -> Package:
        return self.packages[0]


@dataclass
class Slot:
    """A model name's live versions: production, and a canary with its percent of traffic."""

    production: Loaded | None = None
    canary: Loaded | None = None
    weight: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # digest -> why it could not be loaded

    def pick(self, key: str | None) -> Loaded | None:
        """Production, or the canary for `weight` percent of requests: by a hash of the client key when one is
        given (the same client always lands on the same side), else at random."""
        if self.canary is None or self.weight <= 0 or self.production is None:
            return self.production or self.canary
        if key:
            bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 100
        else:
            bucket = random.randrange(100)
        return self.canary if bucket < self.weight else self.production


class ModelSet:
    """Every served model's slot, and the loading/switching of versions."""

    def __init__(self, sources: list[Source], settings: ServeSettings, executor: Executor,
                 on_batch: Any = None, on_failure: Any = None) -> None:
        self.sources = {s.name: s for s in sources}
        self.settings = settings
        self.executor = executor
        self.on_batch = on_batch or (lambda name, version, stats: None)
        self.on_failure = on_failure or (lambda name: None)
        self.slots: dict[str, Slot] = {s.name: Slot() for s in sources}
        self._lock = asyncio.Lock()
        self._failed_at: dict[str, float] = {}  # digest -> when loading failed (retried after a while)

    # ------------------------------------------------------------------------------------------ reading
    def ready(self) -> bool:
        return all(slot.production is not None for slot in self.slots.values())

    def slot(self, name: str) -> Slot:
        if name not in self.slots:
            raise LookupError(f"model {name!r} is not served here; served: {sorted(self.slots)}")
        return self.slots[name]

    def loaded(self, name: str) -> list[Loaded]:
        slot = self.slot(name)
        return [v for v in (slot.production, slot.canary) if v is not None]

    def get(self, name: str, version: int | None, key: str | None = None) -> Loaded:
        """The version to run a request on: the given one (it must be live), or the split's pick."""
        slot = self.slot(name)
        if version is None:
            chosen = slot.pick(key)
            if chosen is None:
                raise ServeError(f"model {name!r} has no version loaded yet")
            return chosen
        for v in self.loaded(name):
            if v.version == version:
                return v
        live = [v.version for v in self.loaded(name)]
        raise LookupError(f"version {version} of {name!r} is not served here; live versions: {live}")

    # ------------------------------------------------------------------------------------------ loading
    def _load(self, source: Source, want: Wanted) -> list[Package]:
        """Open, create sessions and warm up (in a thread): any failure means this version gets no traffic."""
        path = source.open(want)
        threads = self.settings.session_threads()
        pkgs = [Package.open(path, threads=threads) for _ in range(self.settings.session_count())]
        for pkg in pkgs:
            if pkg.kind == "generation":  # an image generator: warmed by drawing (routes_generate.py serves it)
                for rows in sorted({1, self.settings.max_batch_size}):
                    if len(pkg.generate((pkg.classes or [None])[0], rows, 0)) != rows:
                        raise ServeError(f"warm-up drew the wrong number of images for {rows}")
                continue
            for rows in sorted({1, self.settings.max_batch_size}):
                proba = pkg.predict_proba(warmup_input(pkg, rows), batch_size=rows)
                if len(proba) != rows:
                    raise ServeError(f"warm-up gave {len(proba)} predictions for {rows} rows")
        return pkgs

    async def _loaded(self, source: Source, want: Wanted) -> Loaded | None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            pkgs = await loop.run_in_executor(self.executor, self._load, source, want)
        except (ShipmlError, OSError, ValueError, RuntimeError) as err:
            self.slots[source.name].errors[want.digest] = str(err)
            self._failed_at[want.digest] = time.monotonic()
            self.on_failure(source.name)
            log.error("%s v%s (%s) failed to load and gets no traffic: %s", source.name, want.version,
                      want.digest[:12], err)
            return None
        name, version = source.name, want.version
        batcher = Batcher(pkgs, self.executor, self.settings.max_batch_size, self.settings.max_wait_ms / 1000,
                          self.settings.max_queue, self.settings.max_queue_ms / 1000,
                          on_batch=lambda stats: self.on_batch(name, version, stats))
        batcher.start()
        log.info("%s v%s loaded and warmed up in %.2f s (%d session(s) x %d thread(s))", name, version,
                 time.perf_counter() - started, len(pkgs), self.settings.session_threads())
        self.slots[name].errors.pop(want.digest, None)
        s = self.settings
        monitor = VersionMonitor(pkgs[0], s.window_rows, s.window_s, s.min_rows) if s.monitor else None
        return Loaded(name, version, want.digest, pkgs, batcher, monitor=monitor)

    async def sync(self, *, retry_failed: bool = False) -> dict[str, Any]:
        """Bring every slot to what its source wants now; returns what changed and what failed."""
        report: dict[str, Any] = {}
        async with self._lock:
            loop = asyncio.get_running_loop()
            for name, source in self.sources.items():
                try:
                    wanted = await loop.run_in_executor(None, source.wanted)
                except ShipmlError as err:
                    report[name] = {"error": str(err)}
                    log.error("cannot read the aliases of %s: %s (serving what is loaded)", name, err)
                    continue
                report[name] = await self._sync_slot(name, source, wanted, retry_failed)
        return report

    async def _sync_slot(self, name: str, source: Source, wanted: dict[str, Wanted],
                         retry_failed: bool) -> dict[str, Any]:
        slot = self.slots[name]
        changes: dict[str, Any] = {}
        new: dict[str, Loaded | None] = {}
        for alias in ("production", "canary"):
            want = wanted.get(alias)
            current = getattr(slot, alias)
            if want is None:
                new[alias] = None
                continue
            have = next((v for v in (slot.production, slot.canary) if v and v.digest == want.digest), None)
            if have is not None:
                new[alias] = have
                continue
            failed = self._failed_at.get(want.digest)
            if failed is not None and not retry_failed and time.monotonic() - failed < 60:
                new[alias] = current  # a version that just failed is retried after a minute (or on reload)
                continue
            loaded = await self._loaded(source, want)
            new[alias] = loaded if loaded is not None else current
            if loaded is None:
                changes[alias] = {"version": want.version, "error": slot.errors.get(want.digest)}
        was = {"production": slot.production, "canary": slot.canary}
        before = {v for v in was.values() if v is not None}
        canary_want = wanted.get("canary")
        slot.production, slot.canary = new["production"], new["canary"]  # the switch: one step on the loop
        slot.weight = int(canary_want.weight or 0) if canary_want and slot.canary is not None else 0
        after = {v for v in (slot.production, slot.canary) if v is not None}
        for alias in ("production", "canary"):
            v = getattr(slot, alias)
            if alias not in changes and v is not was[alias]:
                changes[alias] = {"version": v.version} if v is not None else None
        for old in before - after:
            old.retired = True
            asyncio.get_running_loop().create_task(self._retire(old))
            changes.setdefault("retired", []).append(old.version)
        return changes

    async def _retire(self, old: Loaded) -> None:
        """A replaced version answers the requests routed to it before the switch, then closes."""
        while old.inflight > 0:
            await asyncio.sleep(0.05)
        await old.batcher.drain()
        log.info("%s v%s retired", old.name, old.version)

    async def close(self) -> None:
        """Finish every queued request of every version (graceful shutdown)."""
        versions = {v for slot in self.slots.values() for v in (slot.production, slot.canary) if v is not None}
        await asyncio.gather(*(v.batcher.drain() for v in versions), return_exceptions=True)

