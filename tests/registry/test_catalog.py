"""The catalog (shipml/registry/catalog.py) on SQLite and on PostgreSQL (see conftest.py for the backends)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from shipml.errors import RegistryError
from shipml.registry.catalog import Catalog, default_url, migrate, revisions
from shipml.registry.migrations.database import MIGRATIONS
from shipml.registry.migrations.schema import METADATA

REPO = Path(__file__).resolve().parents[2]
SIG = {"inputs": [{"name": "text", "kind": "text"}], "labels": ["ham", "spam"]}


def digest(i: int) -> str:
    return f"{i:064x}"


def register(cat: Catalog, name: str, i: int, **kw: object) -> int:
    fields: dict = {"signature": SIG, "metrics": {"f1": 0.9}, "provenance": {"seed": i}, **kw}
    return cat.add_version(name, digest(i), **fields)


def run_sql(url: str, *statements: str) -> None:
    """Statements on a plain connection to the catalog's database (to break or inspect it behind its back)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def schema_drift(url: str) -> list:
    """What differs between the migrated database and catalog.METADATA (empty: the migrations build it)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            heads = ctx.get_current_heads()
            return [("revision", heads)] * (set(heads) != set(ScriptDirectory(str(MIGRATIONS)).get_heads())) + \
                compare_metadata(ctx, METADATA)
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------------------- migrations
def test_open_upgrades_an_empty_database_to_head(catalog_url: str) -> None:
    with Catalog(catalog_url) as cat:
        assert cat.models() == []
    assert schema_drift(catalog_url) == []
    Catalog(catalog_url).close()  # opening a current catalog again is a no-op


@pytest.mark.parametrize("start", revisions())
def test_upgrade_from_every_revision_to_head(catalog_url: str, start: str) -> None:
    migrate(catalog_url, start)
    with Catalog(catalog_url) as cat:
        assert register(cat, "spam", 1) == 1
    assert schema_drift(catalog_url) == []


def test_a_catalog_newer_than_this_shipml_is_refused(sqlite_url: str) -> None:
    Catalog(sqlite_url).close()
    run_sql(sqlite_url, "UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(RegistryError, match=r"newer than this shipml.*upgrade shipml"):
        Catalog(sqlite_url)


# ------------------------------------------------------------------------------------------ concurrency
CHILD = """
import sys, time
from pathlib import Path
from shipml.registry.catalog import Catalog
url, go, i = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
cat = Catalog(url)
print("ready", flush=True)
while not go.exists():
    time.sleep(0.002)
print(cat.add_version("race", f"{i:064x}", signature={}, metrics={}, provenance={"proc": i}), flush=True)
"""


@pytest.mark.parametrize("n", [6, pytest.param(20, marks=pytest.mark.slow)])
def test_processes_registering_at_once_get_versions_1_to_n(catalog_url: str, tmp_path: Path, n: int) -> None:
    """Real processes: they open the fresh catalog together (racing its creation), then register together (6 in
    the fast set, 20 in CI's slow set: each process costs a Python start on 2 cores)."""
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, catalog_url, str(go), str(i)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(n)]
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            assert line == "ready", p.stderr.read() if p.stderr else line
        go.touch()
        outs = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            p.kill() if p.poll() is None else None
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs if err]
    numbers = sorted(int(out.strip()) for out, _ in outs)
    assert numbers == list(range(1, n + 1))
    with Catalog(catalog_url) as cat:
        stored = cat.versions("race")
        assert [v.number for v in stored] == list(range(1, n + 1))
        assert len({v.digest for v in stored}) == n
        assert [e.kind for e in cat.history("race")] == ["register"] * n


KILLED_CHILD = """
import os, signal, sys
from shipml.registry.catalog import Catalog
url, where = sys.argv[1], sys.argv[2]
cat = Catalog(url)
def die(*args, **kwargs):  # the injected point: after the version or alias rows, before the event and commit
    os.kill(os.getpid(), signal.SIGKILL)
cat._event = die
if where == "register":
    cat.add_version("spam", "f" * 64, signature={}, metrics={}, provenance={})
else:
    cat.update_aliases("spam", {"production": (2, None), "canary": None}, event="promote")
"""


@pytest.mark.parametrize("where", ["register", "promote"])
def test_a_writer_killed_mid_transaction_leaves_nothing_behind(catalog_url: str, where: str) -> None:
    with Catalog(catalog_url) as cat:
        register(cat, "spam", 1)
        register(cat, "spam", 2)
        cat.set_alias("spam", "production", 1)
        cat.set_alias("spam", "canary", 2, weight=50, event="canary")
        before = (cat.versions("spam"), cat.aliases("spam"), cat.history("spam"))
    child = subprocess.run([sys.executable, "-c", KILLED_CHILD, catalog_url, where], cwd=REPO, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert child.returncode == -9, child.stderr
    with Catalog(catalog_url, busy_timeout_s=60) as cat:
        assert (cat.versions("spam"), cat.aliases("spam"), cat.history("spam")) == before
        assert register(cat, "spam", 3) == 3  # the killed writer's number was never taken: still gapless


# ----------------------------------------------------------------------------------------- registration
def test_register_read_back_and_reregister_is_idempotent(catalog_url: str) -> None:
    with Catalog(catalog_url) as cat:
        assert register(cat, "spam", 1, author="ann", note="first") == 1
        assert register(cat, "spam", 2, metrics={"f1": float("nan"), "auc": float("inf")}) == 2
        assert register(cat, "spam", 1) == 1  # same package again: its version, nothing written
        assert register(cat, "other", 1) == 1  # the same package under another name is that name's v1
        v1, v2 = cat.versions("spam")
        assert (v1.digest, v1.author, v1.note, v1.signature, v1.provenance) == (digest(1), "ann", "first", SIG,
                                                                               {"seed": 1})
        assert v2.metrics == {"f1": None, "auc": None} and v2.created >= v1.created
        assert v2.created.tzinfo is not None and v2.author  # default author: user@host
        assert cat.version("spam", "2") == v2
        assert [(e.kind, e.version, e.why) for e in cat.history("spam")] == [("register", 1, "first"),
                                                                            ("register", 2, None)]
        assert [(m.name, m.latest) for m in cat.models()] == [("other", 1), ("spam", 2)]
        assert cat.digests() == {digest(1), digest(2)}


def test_unknown_model_or_version_names_what_exists(catalog_url: str) -> None:
    with Catalog(catalog_url) as cat:
        with pytest.raises(RegistryError, match=r"no model named 'spam'.*models: none yet"):
            cat.versions("spam")
        register(cat, "spam", 1)
        register(cat, "spam", 2)
        with pytest.raises(RegistryError, match=r"no model named 'ham'.*models: spam"):
            cat.version("ham", 1)
        with pytest.raises(RegistryError, match=r"no version 7 \(versions 1 to 2\)"):
            cat.version("spam", 7)
        with pytest.raises(RegistryError, match="no version 3"):
            cat.set_alias("spam", "production", 3)
        with pytest.raises(RegistryError, match="not a version number"):
            cat.version("spam", 0)


@pytest.mark.parametrize(("call", "message"), [
    (lambda c: c.add_version("../x", digest(1), signature={}, metrics={}, provenance={}), "not allowed"),
    (lambda c: c.add_version("a" * 200, digest(1), signature={}, metrics={}, provenance={}), "not allowed"),
    (lambda c: c.add_version("spam", "abc", signature={}, metrics={}, provenance={}), "not a sha256"),
    (lambda c: c.add_version("spam", digest(1), signature={}, metrics={"x": object()}, provenance={}),
     "metrics must be JSON"),
    (lambda c: c.set_alias("spam", "canary", 1, weight=101), "weight from 0 to 100"),
    (lambda c: c.set_alias("spam", "canary", 1), "weight from 0 to 100"),
    (lambda c: c.set_alias("spam", "production", 1, weight=5), "only the canary alias has a weight"),
    (lambda c: c.set_alias("spam", "staging", 1), "alias 'staging' is unknown; use one of production, canary"),
    (lambda c: c.set_alias("spam", "production", 1, event="deploy"), "event kind 'deploy' is unknown"),
    (lambda c: c.log_event("spam", "oops"), "event kind 'oops' is unknown"),
])
def test_bad_input_is_one_clear_error_and_writes_nothing(sqlite_url: str, call, message: str) -> None:
    with Catalog(sqlite_url) as cat:
        register(cat, "spam", 1)
        with pytest.raises(RegistryError, match=message):
            call(cat)
        assert [v.number for v in cat.versions("spam")] == [1] and cat.aliases("spam") == {}
        assert len(cat.history("spam")) == 1


def test_the_first_revision_downgrades_to_an_empty_database(catalog_url: str) -> None:
    """Downgrades exist for a DBA undoing a failed deploy; the catalog itself only ever upgrades."""
    from alembic import command

    from shipml.registry.migrations.database import alembic_config

    Catalog(catalog_url).close()
    engine = sa.create_engine(catalog_url)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
    finally:
        engine.dispose()
    with Catalog(catalog_url) as cat:
        assert register(cat, "spam", 1) == 1


# ------------------------------------------------------------------------------------- aliases, events
def test_release_canary_promote_rollback_are_logged_with_from_and_to(catalog_url: str) -> None:
    with Catalog(catalog_url) as cat:
        for i in (1, 2, 3):
            register(cat, "spam", i)
        cat.set_alias("spam", "production", 1, who="ann", why="first release")
        cat.set_alias("spam", "canary", 2, weight=10, event="canary")
        assert {a: (x.version, x.weight) for a, x in cat.aliases("spam").items()} == {"production": (1, None),
                                                                                   "canary": (2, 10)}
        cat.update_aliases("spam", {"production": (2, None), "canary": None}, event="promote")
        assert {a: x.version for a, x in cat.aliases("spam").items()} == {"production": 2}
        cat.log_event("spam", "gate", version=3, details={"gate": "mcnemar", "p": 0.01, "verdict": "blocked"})
        cat.set_alias("spam", "production", 1, event="rollback", why="latency regression")
        release, _canary, promote, gate, rollback = cat.history("spam")[3:]
        assert (release.who, release.why, release.version) == ("ann", "first release", 1)
        assert promote.details["aliases"] == {"production": {"from": {"version": 1, "weight": None},
                                                             "to": {"version": 2, "weight": None}},
                                              "canary": {"from": {"version": 2, "weight": 10}, "to": None}}
        assert gate.details == {"gate": "mcnemar", "p": 0.01, "verdict": "blocked"} and gate.version == 3
        assert rollback.details["aliases"]["production"]["from"]["version"] == 2
        assert [m.aliases for m in cat.models()] == [{"production": 1}]


FAIL_EVENT_INSERT = {
    "sqlite": ["CREATE TRIGGER fail_events BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'injected'); END"],
    "postgresql": ["CREATE FUNCTION fail_events() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN RAISE EXCEPTION 'injected'; END $$",
                   "CREATE TRIGGER fail_events BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION fail_events()"],
}


def test_an_alias_change_and_its_event_commit_together_or_not_at_all(catalog_url: str) -> None:
    with Catalog(catalog_url) as cat:
        register(cat, "spam", 1)
        register(cat, "spam", 2)
        cat.set_alias("spam", "production", 1)
        cat.set_alias("spam", "canary", 2, weight=20, event="canary")
        before_aliases, before_history = cat.aliases("spam"), cat.history("spam")
        run_sql(catalog_url, *FAIL_EVENT_INSERT[sa.make_url(catalog_url).get_backend_name()])
        with pytest.raises(RegistryError, match="injected"):
            cat.update_aliases("spam", {"production": (2, None), "canary": None}, event="promote")
        with pytest.raises(RegistryError, match="injected"):  # a register is atomic with its event too
            register(cat, "spam", 3)
        assert cat.aliases("spam") == before_aliases
        assert cat.history("spam") == before_history
        assert [v.number for v in cat.versions("spam")] == [1, 2]


def test_the_event_log_is_append_only(catalog_url: str) -> None:
    with Catalog(catalog_url) as cat:
        register(cat, "spam", 1)
    for statement in ("UPDATE events SET who = 'mallory'", "DELETE FROM events"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            run_sql(catalog_url, statement)
    with Catalog(catalog_url) as cat:
        assert len(cat.history("spam")) == 1


# ---------------------------------------------------------------------------------------------- faults
def test_a_read_only_sqlite_catalog_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    with Catalog(f"sqlite:///{path}") as cat:
        register(cat, "spam", 1)
    # read-only through the URI (the tests run as root, where chmod would not stop a write)
    with Catalog(f"sqlite:///file:{path}?mode=ro&uri=true") as ro:
        assert [v.number for v in ro.versions("spam")] == [1]  # a read-only replica can still read
        with pytest.raises(RegistryError, match=f"catalog at .*{path.name}.* is read-only.*make the database file"):
            register(ro, "spam", 2)
    missing = tmp_path / "nothing-here.db"
    with pytest.raises(RegistryError, match="nothing-here"):
        Catalog(f"sqlite:///file:{missing}?mode=ro&uri=true")


def test_an_unreachable_postgres_is_one_clear_error_with_the_password_masked() -> None:
    started = time.monotonic()
    url = "postgresql+psycopg://shipml:hunter2@127.0.0.1:1/registry?connect_timeout=3"
    with pytest.raises(RegistryError, match=r"cannot reach the catalog at postgresql.*start the database") as err:
        Catalog(url)
    assert "hunter2" not in str(err.value) and "***" in str(err.value)
    assert time.monotonic() - started < 60  # a generous bound: it must not hang on the default timeout


def test_urls_default_and_unsupported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHIPML_REGISTRY_URL", raising=False)
    assert default_url(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'registry.db'}"
    assert default_url().endswith("/.shipml/registry.db")
    monkeypatch.setenv("SHIPML_REGISTRY_URL", f"sqlite:///{tmp_path / 'env.db'}")
    with Catalog() as cat:
        assert cat.url.endswith("env.db")
    assert (tmp_path / "env.db").exists()
    with Catalog(root=tmp_path / "ignored") as cat:  # the environment wins over the default root
        assert cat.url.endswith("env.db")
    with pytest.raises(RegistryError, match=r"supports sqlite.*postgresql"):
        Catalog("mysql://u@host/db")
    with pytest.raises(RegistryError, match="cannot be parsed"):
        Catalog("not a url")
