"""The catalog: which numbered versions each model name has, where its aliases point, and what happened.

One SQL database, four tables (the schema is below; Alembic migrations in `migrations/` create it):

    models     name (unique), created, holdout (digest of its frozen evaluation set, set once)
    versions   (model, number) unique and gapless from 1; package digest (sha256 of its MANIFEST.json, the
               store's key), signature, metrics, provenance (JSON), created, author, note
    aliases    production, and canary with a traffic weight 0-100, each pointing at a version
    events     append-only log (a trigger refuses UPDATE and DELETE): register, gate, release, promote,
               rollback, force, canary: who, when, why, details (JSON)

Backends: a SQLite file by default (`~/.shipml/registry.db`, or `registry.db` in the registry root the caller
passes): zero set-up, WAL so readers never wait for a writer, a busy timeout so writers queue instead of
failing. PostgreSQL by URL (`SHIPML_REGISTRY_URL=postgresql+psycopg://user:pw@host/db`) when many machines share
one catalog: N server replicas and release jobs see the same aliases, and canary weights propagate through it.

Concurrency: every write is one transaction that first locks its model (PostgreSQL: upsert the model row,
then `SELECT ... FOR UPDATE`; SQLite: `BEGIN IMMEDIATE`, one writer at a time), so version numbers are
gapless and unique however many processes register at once, and an alias change and its event commit
together or not at all. Lock timeouts, deadlocks and serialization failures are retried.

Opening a catalog upgrades its schema to the newest migration (Alembic, run from code; a current schema is left
untouched, so a read-only replica can still read). The tables live in `migrations/schema.py`, the connection
set-up and error translation in `migrations/database.py`.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from shipml.errors import RegistryError
from shipml.registry.migrations.database import default_url, make_engine, migrate, parse_url, revisions, run, upgrade
from shipml.registry.migrations.schema import ALIASES, EVENT_KINDS, aliases, events, models, versions
from shipml.registry.names import check_name, check_version

__all__ = ["ALIASES", "EVENT_KINDS", "Alias", "Catalog", "Event", "ModelInfo", "VersionInfo", "default_url",
           "migrate", "revisions"]

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class ModelInfo:
    """A model name, its newest version number (None before the first) and where its aliases point."""
    name: str
    created: datetime
    latest: int | None
    aliases: dict[str, int]


@dataclass(frozen=True)
class VersionInfo:
    """One registered package: `digest` is the store's key (sha256 of the package's MANIFEST.json)."""
    model: str
    number: int
    digest: str
    signature: dict[str, Any]
    metrics: dict[str, Any]
    provenance: dict[str, Any]
    created: datetime
    author: str
    note: str


@dataclass(frozen=True)
class Alias:
    """`production` or `canary` (with `weight`: the percent of traffic the server sends to it)."""
    model: str
    name: str
    version: int
    weight: int | None
    updated: datetime


@dataclass(frozen=True)
class Event:
    """One line of a model's append-only history."""
    id: int
    model: str
    version: int | None
    kind: str
    who: str
    at: datetime
    why: str | None
    details: dict[str, Any]


# ------------------------------------------------------------------------------------------------ catalog
def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


def _clean_json(value: Any, what: str) -> Any:
    """JSON-safe data: NaN and infinities become null (PostgreSQL's JSON has no NaN); others are refused."""
    def fix(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, Mapping):
            return {str(k): fix(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [fix(x) for x in v]
        return v
    fixed = fix(value)
    try:
        json.dumps(fixed, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{what} must be JSON data (dicts, lists, strings, numbers): {exc}") from exc
    return fixed


def _check_digest(digest: str) -> str:
    if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
        raise RegistryError(f"package digest {digest!r:.80} is not a sha256 (64 lowercase hex characters); "
                            "register a package through the store, which computes it from MANIFEST.json")
    return digest


class Catalog:
    """The catalog at `url` (default: `default_url(root)`), upgraded to the newest schema when opened.

    Opening runs any pending Alembic migration (under a lock, so many processes may open a fresh catalog at
    once) and writes nothing if the schema is current. Every method is one transaction. An unreachable or
    read-only database raises one RegistryError naming the URL (password masked) and the fix.
    """

    def __init__(self, url: str | None = None, *, root: str | os.PathLike[str] | None = None,
                 busy_timeout_s: float = 30.0) -> None:
        self._url = parse_url(url or default_url(root))
        self.url = self._url.render_as_string(hide_password=True)  # safe to print and log
        self._engine = make_engine(self._url, busy_timeout_s)
        try:
            upgrade(self._engine, self.url, "head")
        except BaseException:
            self._engine.dispose()
            raise

    def close(self) -> None:
        """Release pooled connections (a server replica keeps one Catalog for its lifetime)."""
        self._engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({self.url!r})"

    def _tx(self, action: str, fn: Callable[[sa.Connection], T], write: bool = True) -> T:
        return run(self._engine, self.url, action, fn, write)

    # ------------------------------------------------------------------------------------------- helpers
    def _model_id(self, conn: sa.Connection, name: str, *, lock: bool = False, create: bool = False) -> int:
        if create:
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            conn.execute(insert(models).values(name=name, created=_now()).on_conflict_do_nothing())
        query = sa.select(models.c.id).where(models.c.name == name)
        found = conn.execute(query.with_for_update() if lock else query).scalar()
        if found is None:
            names = conn.execute(sa.select(models.c.name).order_by(models.c.name).limit(30)).scalars().all()
            known = ", ".join(names) if names else "none yet"
            raise RegistryError(f"no model named {name!r} in the catalog at {self.url} (models: {known}); "
                                "register a package under that name first (shipml register ... --name NAME)")
        return found

    def _check_version(self, conn: sa.Connection, model_id: int, name: str, number: int) -> None:
        latest = conn.execute(sa.select(sa.func.max(versions.c.number))
                              .where(versions.c.model_id == model_id)).scalar()
        if latest is None or number > latest:
            has = f"versions 1 to {latest}" if latest else "no versions yet"
            raise RegistryError(f"model {name!r} has no version {number} ({has}); see `shipml history {name}`")

    def _event(self, conn: sa.Connection, model_id: int, version: int | None, kind: str, who: str | None,
               why: str | None, details: Mapping[str, Any] | None) -> None:
        if kind not in EVENT_KINDS:
            raise RegistryError(f"event kind {kind!r} is unknown; use one of {', '.join(EVENT_KINDS)}")
        conn.execute(sa.insert(events).values(
            model_id=model_id, version=version, kind=kind, who=who or _who(), at=_now(), why=why,
            details=_clean_json(dict(details or {}), "event details")))

    # --------------------------------------------------------------------------------------------- writes
    def add_version(self, name: str, digest: str, *, signature: Mapping[str, Any], metrics: Mapping[str, Any],
                    provenance: Mapping[str, Any], author: str | None = None, note: str = "") -> int:
        """Register a package as the next version of `name` (created on first use) and log a `register` event.

        Idempotent: registering a digest this model already has returns that version and writes nothing, so
        a retried or re-run `shipml register` never makes a duplicate. Numbers are gapless (1, 2, 3, ...) under
        any number of concurrent writers; a writer killed mid-way leaves no number behind. Non-finite floats in
        the JSON fields are stored as null.
        """
        name, digest = check_name(name), _check_digest(digest)
        row = {"digest": digest, "signature": _clean_json(dict(signature), "signature"),
               "metrics": _clean_json(dict(metrics), "metrics"),
               "provenance": _clean_json(dict(provenance), "provenance"), "author": author or _who(), "note": note}

        def register(conn: sa.Connection) -> int:
            model_id = self._model_id(conn, name, lock=True, create=True)
            same = conn.execute(sa.select(versions.c.number).where(
                versions.c.model_id == model_id, versions.c.digest == digest)).scalar()
            if same is not None:
                return same
            number = 1 + (conn.execute(sa.select(sa.func.max(versions.c.number))
                                       .where(versions.c.model_id == model_id)).scalar() or 0)
            conn.execute(sa.insert(versions).values(model_id=model_id, number=number, created=_now(), **row))
            self._event(conn, model_id, number, "register", row["author"], note or None, {"digest": digest})
            return number

        return self._tx("register", register)

    def set_alias(self, name: str, alias: str, version: int, *, weight: int | None = None, event: str = "release",
                  who: str | None = None, why: str | None = None, details: Mapping[str, Any] | None = None) -> None:
        """Point `alias` at `version` and log `event`, in one transaction (see `update_aliases`)."""
        self.update_aliases(name, {alias: (version, weight)}, event=event, who=who, why=why, details=details)

    def update_aliases(self, name: str, changes: Mapping[str, tuple[int, int | None] | None], *, event: str,
                       who: str | None = None, why: str | None = None,
                       details: Mapping[str, Any] | None = None,
                       expect: Mapping[str, int | None] | None = None) -> None:
        """Apply alias changes (`{alias: (version, weight)}`, or `None` to remove it) and log one event.
        `expect` ({alias: version or None}) refuses the change if an alias moved since the caller looked.

        All of it commits together or not at all, so promote (canary -> production, canary removed) and
        rollback are single steps that a killed process never leaves half-done. The event's details record
        each alias's previous and new target, so a rollback can find the previous production.
        """
        name = check_name(name)
        targets: dict[str, tuple[int, int | None] | None] = {}
        for alias, target in changes.items():
            if alias not in ALIASES:
                raise RegistryError(f"alias {alias!r} is unknown; use one of {', '.join(ALIASES)}")
            if target is not None:
                number, weight = check_version(target[0]), target[1]
                if alias == "canary" and (type(weight) is not int or not 0 <= weight <= 100):
                    raise RegistryError(f"a canary needs a traffic weight from 0 to 100 (percent), not {weight!r}")
                if alias != "canary" and weight is not None:
                    raise RegistryError(f"only the canary alias has a weight; {alias} takes all remaining traffic")
                target = (number, weight)
            targets[alias] = target
        if not targets:
            raise RegistryError("no alias change given; name production and/or canary")

        def change(conn: sa.Connection) -> None:
            model_id = self._model_id(conn, name, lock=True)
            for alias, wanted in (expect or {}).items():  # checked under the model's lock: two racing releases
                now = conn.execute(sa.select(aliases.c.version).where(  # cannot both move production
                    (aliases.c.model_id == model_id) & (aliases.c.name == alias))).scalar()
                if now != wanted:
                    raise RegistryError(f"{alias} of {name} is v{now} now, not v{wanted} as when this {event} "
                                        "started (another release moved it); run it again")
            record: dict[str, Any] = {}
            for alias, target in targets.items():
                key = (aliases.c.model_id == model_id) & (aliases.c.name == alias)
                old = conn.execute(sa.select(aliases.c.version, aliases.c.weight).where(key)).first()
                conn.execute(sa.delete(aliases).where(key))
                if target is not None:
                    self._check_version(conn, model_id, name, target[0])
                    conn.execute(sa.insert(aliases).values(model_id=model_id, name=alias, version=target[0],
                                                           weight=target[1], updated=_now()))
                record[alias] = {"from": None if old is None else {"version": old[0], "weight": old[1]},
                                 "to": None if target is None else {"version": target[0], "weight": target[1]}}
            shown = next((t[0] for t in targets.values() if t is not None), None)
            self._event(conn, model_id, shown, event, who, why, {**dict(details or {}), "aliases": record})

        self._tx(f"{event} (alias change)", change)

    def log_event(self, name: str, kind: str, *, version: int | None = None, who: str | None = None,
                  why: str | None = None, details: Mapping[str, Any] | None = None) -> None:
        """Append an event (e.g. each gate's result) to the model's history; nothing else changes."""
        name = check_name(name)
        number = None if version is None else check_version(version)

        def append(conn: sa.Connection) -> None:
            model_id = self._model_id(conn, name)
            if number is not None:
                self._check_version(conn, model_id, name, number)
            self._event(conn, model_id, number, kind, who, why, details)

        self._tx(f"log {kind}", append)

    def set_holdout(self, name: str, digest: str) -> None:
        """Record `name`'s frozen evaluation set (a holdout digest in the store). Set once, at the first release:
        setting the same digest again is a no-op, a different one is refused (versions are compared on it)."""
        name, digest = check_name(name), _check_digest(digest)

        def record(conn: sa.Connection) -> None:
            model_id = self._model_id(conn, name, lock=True)
            current = conn.execute(sa.select(models.c.holdout).where(models.c.id == model_id)).scalar()
            if current is None:
                conn.execute(sa.update(models).where(models.c.id == model_id).values(holdout=digest))
            elif current != digest:
                raise RegistryError(f"model {name!r} already has the holdout {current}; it is frozen at the first "
                                    f"release so every version is compared on the same rows, and cannot become "
                                    f"{digest}")

        self._tx("set holdout", record)

    def holdout(self, name: str) -> str | None:
        """The digest of `name`'s frozen holdout, or None before its first release."""
        name = check_name(name)

        def read(conn: sa.Connection) -> str | None:
            model_id = self._model_id(conn, name)
            return conn.execute(sa.select(models.c.holdout).where(models.c.id == model_id)).scalar()
        return self._tx("read holdout", read, write=False)

    # ---------------------------------------------------------------------------------------------- reads
    def models(self) -> list[ModelInfo]:
        """Every model, by name, with its newest version and aliases."""
        def read(conn: sa.Connection) -> list[ModelInfo]:
            latest = dict(conn.execute(sa.select(versions.c.model_id, sa.func.max(versions.c.number))
                                       .group_by(versions.c.model_id)).all())
            pointed: dict[int, dict[str, int]] = {}
            for model_id, alias, number in conn.execute(sa.select(aliases.c.model_id, aliases.c.name,
                                                                  aliases.c.version)):
                pointed.setdefault(model_id, {})[alias] = number
            rows = conn.execute(sa.select(models).order_by(models.c.name)).all()
            return [ModelInfo(r.name, _utc(r.created), latest.get(r.id), pointed.get(r.id, {})) for r in rows]
        return self._tx("list models", read, write=False)

    def versions(self, name: str) -> list[VersionInfo]:
        """Every version of `name`, oldest first."""
        name = check_name(name)

        def read(conn: sa.Connection) -> list[VersionInfo]:
            model_id = self._model_id(conn, name)
            rows = conn.execute(sa.select(versions).where(versions.c.model_id == model_id)
                                .order_by(versions.c.number)).all()
            return [self._version(name, r) for r in rows]
        return self._tx("list versions", read, write=False)

    def version(self, name: str, number: int) -> VersionInfo:
        """Version `number` of `name`; an unknown one is a RegistryError saying which versions exist."""
        name, number = check_name(name), check_version(number)

        def read(conn: sa.Connection) -> VersionInfo:
            model_id = self._model_id(conn, name)
            row = conn.execute(sa.select(versions).where(versions.c.model_id == model_id,
                                                         versions.c.number == number)).first()
            if row is None:
                self._check_version(conn, model_id, name, number)
            return self._version(name, row)
        return self._tx("read version", read, write=False)

    def aliases(self, name: str) -> dict[str, Alias]:
        """Where `name`'s aliases point now (absent aliases are absent keys)."""
        name = check_name(name)

        def read(conn: sa.Connection) -> dict[str, Alias]:
            model_id = self._model_id(conn, name)
            rows = conn.execute(sa.select(aliases).where(aliases.c.model_id == model_id)).all()
            return {r.name: Alias(name, r.name, r.version, r.weight, _utc(r.updated)) for r in rows}
        return self._tx("read aliases", read, write=False)

    def history(self, name: str) -> list[Event]:
        """`name`'s events, in the order they happened."""
        name = check_name(name)

        def read(conn: sa.Connection) -> list[Event]:
            model_id = self._model_id(conn, name)
            rows = conn.execute(sa.select(events).where(events.c.model_id == model_id).order_by(events.c.id)).all()
            return [Event(r.id, name, r.version, r.kind, r.who, _utc(r.at), r.why, r.details or {}) for r in rows]
        return self._tx("read history", read, write=False)

    def digests(self) -> set[str]:
        """Every package digest any version points at (what a store clean-up must keep)."""
        return self._tx("list digests", lambda c: set(c.execute(sa.select(versions.c.digest)).scalars()), False)

    @staticmethod
    def _version(name: str, r: Any) -> VersionInfo:
        return VersionInfo(name, r.number, r.digest, r.signature or {}, r.metrics or {}, r.provenance or {},
                           _utc(r.created), r.author, r.note)

