"""Opening a catalog database: URLs, engines set up for the catalog's locking, retried transactions, migrations.

SQLite connections get WAL, a busy timeout and foreign keys, and every write transaction starts with
`BEGIN IMMEDIATE` (one writer at a time, taken before anything is read); PostgreSQL connections get a connect
timeout and a liveness check. Database errors become one RegistryError naming the URL (password masked) and the
fix; lock timeouts, deadlocks and serialization failures are retried first. Migrations run programmatically
(no alembic.ini), under a lock, so many processes opening a fresh catalog at once upgrade it exactly once.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event as sa_event
from sqlalchemy.exc import ArgumentError, DBAPIError

from shipml.errors import RegistryError

__all__ = ["MIGRATIONS", "alembic_config", "default_url", "make_engine", "migrate", "parse_url", "revisions", "run",
           "upgrade"]

T = TypeVar("T")
MIGRATIONS = Path(__file__).resolve().parent
_ATTEMPTS = 8  # transient lock/serialization failures retried this often, with jittered backoff
_PG_UPGRADE_LOCK = 0x5348_4950  # advisory lock key: one schema upgrade at a time per database


def default_url(root: str | os.PathLike[str] | None = None) -> str:
    """`SHIPML_REGISTRY_URL` if set, else a SQLite file: `<root>/registry.db`, or `~/.shipml/registry.db`."""
    if os.environ.get("SHIPML_REGISTRY_URL"):
        return os.environ["SHIPML_REGISTRY_URL"]
    folder = Path(root) if root is not None else Path.home() / ".shipml"
    return f"sqlite:///{folder.expanduser().resolve() / 'registry.db'}"


def parse_url(raw: str) -> sa.URL:
    try:
        url = sa.make_url(raw)
    except ArgumentError as exc:
        raise RegistryError(f"catalog URL {raw!r} cannot be parsed ({exc}); use sqlite:////abs/path/registry.db "
                            "or postgresql+psycopg://user:password@host:5432/db") from exc
    if url.drivername == "postgresql":  # plain postgresql:// would mean psycopg2, which shipml does not use
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise RegistryError(f"catalog URL {url.render_as_string(hide_password=True)} uses {url.drivername!r}; "
                            "the catalog supports sqlite:///... and postgresql+psycopg://...")
    return url


def make_engine(url: sa.URL, busy_timeout_s: float) -> sa.Engine:
    """An engine whose connections are set up for the catalog's locking (see the module docstring)."""
    if url.get_backend_name() == "postgresql":
        args = {} if "connect_timeout" in url.query else {"connect_timeout": 10}  # an unreachable host fails fast
        return sa.create_engine(url, connect_args=args, pool_pre_ping=True)
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        try:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryError(f"cannot create the folder of the catalog {database} ({exc}); pass a writable "
                                "registry root or set SHIPML_REGISTRY_URL") from exc
    engine = sa.create_engine(url, connect_args={"timeout": busy_timeout_s})

    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver's own late, deferred BEGIN is replaced by _on_begin's
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            cursor.execute("PRAGMA journal_mode = WAL")  # persistent: set once, by the first writer
        cursor.close()

    @sa_event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # a writer takes the write lock at BEGIN, so two writers never both read "max version = 3"
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

    return engine


def _transient(exc: DBAPIError) -> bool:
    """A lock timeout, deadlock or serialization failure: the same transaction may succeed if run again."""
    state = getattr(exc.orig, "sqlstate", None)
    return state in ("40001", "40P01", "55P03") or "database is locked" in str(exc.orig)


def _error(shown: str, action: str, exc: DBAPIError, connecting: bool) -> RegistryError:
    text = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    low = str(exc.orig).lower()
    if "readonly" in low or "read-only" in low or getattr(exc.orig, "sqlstate", None) == "25006":
        return RegistryError(f"the catalog at {shown} is read-only ({text}); {action} needs to write: make the "
                             "database file and its folder writable, or point SHIPML_REGISTRY_URL at a writable "
                             "catalog")
    if connecting or exc.connection_invalidated:
        return RegistryError(f"cannot reach the catalog at {shown} ({text}); start the database server or fix "
                             "the URL (SHIPML_REGISTRY_URL or the url argument)")
    return RegistryError(f"catalog {action} failed at {shown}: {text}")


def run(engine: sa.Engine, shown: str, action: str, fn: Callable[[sa.Connection], T], write: bool) -> T:
    """`fn` in one transaction (rolled back if it raises), retried on transient lock errors."""
    delay = 0.02
    for attempt in range(1, _ATTEMPTS + 1):
        connecting = True
        try:
            with engine.connect() as conn:
                connecting = False
                conn.execution_options(write=write)
                with conn.begin():
                    return fn(conn)
        except DBAPIError as exc:
            if attempt < _ATTEMPTS and _transient(exc):
                time.sleep(delay * random.uniform(1.0, 2.0))
                delay = min(delay * 2, 1.0)
                continue
            raise _error(shown, action, exc, connecting) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def alembic_config(conn: sa.Connection) -> Config:
    """Alembic's config for migrating on `conn`, inside its open transaction (see env.py)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn  # env.py migrates on this connection, inside the caller's transaction
    return cfg


def revisions() -> list[str]:
    """Every migration revision id, oldest first (the test harness upgrades from each one to head)."""
    script = ScriptDirectory(str(MIGRATIONS))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def upgrade(engine: sa.Engine, shown: str, revision: str) -> None:
    script = ScriptDirectory(str(MIGRATIONS))
    known = {r.revision for r in script.walk_revisions()}
    current = run(engine, shown, "open", lambda c: set(MigrationContext.configure(c).get_current_heads()), False)
    if current - known:
        raise RegistryError(f"the catalog at {shown} is at schema revision {sorted(current - known)}, newer than "
                            "this shipml knows; upgrade shipml (pip install -U shipml)")
    if revision == "head" and current == set(script.get_heads()):
        return  # already current: opening writes nothing (a read-only replica can still read)

    def migrate_locked(conn: sa.Connection) -> None:
        if conn.dialect.name == "postgresql":  # SQLite's BEGIN IMMEDIATE already serializes upgrades
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_UPGRADE_LOCK})
        command.upgrade(alembic_config(conn), revision)

    run(engine, shown, "schema upgrade", migrate_locked, True)


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the catalog at `url` to `revision` (opening a `Catalog` does this to head by itself)."""
    parsed = parse_url(url)
    engine = make_engine(parsed, 30.0)
    try:
        upgrade(engine, parsed.render_as_string(hide_password=True), revision)
    finally:
        engine.dispose()
