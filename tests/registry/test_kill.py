"""A process killed (SIGKILL, so no `except` or `finally` runs) at any point of register / release /
release --canary / promote / rollback leaves the store and the catalog consistent, and the same command then
succeeds (issue 9; docs/registry.md "Order of writes").

Each case runs the operation in a real child process that kills itself at one injected point (a monkeypatch in
the child; nothing in shipml knows about it), on both catalogs (SQLite, PostgreSQL: `catalog_url`), and, where
the point is in the store, on both store code paths: the local folder (temp folder + rename) and the fsspec
path object stores take (no rename, MANIFEST.json / holdout.json written last), driven through fsspec's
`local://` filesystem so that a killed child's half-written objects survive it. After the kill the test
process checks: every version's package opens and verifies, the holdout opens, nothing partial is visible as
a package, versions are gapless, aliases point at versions, every alias move has its event and no event
claims a move that did not happen; the catalog is exactly before or exactly after the operation; then it runs
the operation again and checks the result and that temporaries are gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from test_runtime_package import IMAGE_PREP, INPUTS, image_model, write_package

from shipml.registry import Registry
from shipml.registry.holdout import HOLDOUTS, INDEX, open_holdout
from shipml.registry.store import PACKAGES
from shipml.runtime import Package
from shipml.runtime.format import MANIFEST, package_digest, write_manifest

REPO = Path(__file__).resolve().parents[2]
NAME = "pets"

# The child: opens the registry, arms one injection point, runs one operation. It must die by the signal;
# finishing the operation prints "survived" and exits 0, which fails the test (the point was never reached).
CHILD = r"""
import json, os, signal, sys
spec = json.loads(sys.argv[1])
import shipml.registry.release as release_mod
import shipml.registry.store as store_mod
from shipml.registry import Registry
from shipml.registry.catalog import Catalog

def die(*_args, **_kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

def then_die(owner, attr):
    real = getattr(owner, attr)
    def wrapped(*args, **kwargs):
        real(*args, **kwargs)
        die()
    setattr(owner, attr, wrapped)

reg = Registry(spec["root"], url=spec["url"], store=spec["store"], storage_options=spec["options"])
point, remote, op = spec["point"], spec["store"] is not None, spec["op"]
fs = reg.store._fs

if point == "store-copy":  # some of the package's files written, not all
    if remote:
        real_copy = store_mod._copy
        def copy_one_then_die(*args):
            real_copy(*args)
            die()
        store_mod._copy = copy_one_then_die
    else:
        then_die(store_mod, "_write_local")
elif point == "store-commit":  # every file written; local: before the rename, remote: before MANIFEST.json
    if remote:
        real_open = fs.open
        def open_(path, mode="rb", *args, **kwargs):
            if path.endswith("/MANIFEST.json") and "w" in mode:
                die()
            return real_open(path, mode, *args, **kwargs)
        fs.open = open_
    else:
        store_mod.fsync_dir = die  # the first fsync of the temp folder, just before the rename
elif point == "after-store-put":  # the package is stored, the catalog row not yet written
    then_die(store_mod.Store, "put")
elif point == "holdout-files":  # the holdout's files written; local: before the rename, remote: before holdout.json
    if remote:
        real_pipe = fs.pipe_file
        def pipe(path, *args, **kwargs):
            if path.endswith("/holdout.json"):
                die()
            return real_pipe(path, *args, **kwargs)
        fs.pipe_file = pipe
    else:
        store_mod.fsync_dir = die
elif point == "after-holdout-put":  # the holdout stored, the catalog not told
    then_die(release_mod, "put_holdout")
elif point == "holdout-recorded":  # the catalog records the holdout, no gate has run
    then_die(Catalog, "set_holdout")
elif point == "after-gate-event":  # the gate event committed, the alias not moved
    then_die(Catalog, "log_event")
elif point == "in-transaction":  # inside the write's transaction (version / alias rows written), before commit
    real_event = Catalog._event
    def event(self, conn, model_id, version, kind, *args):
        if kind == spec["kind"]:
            die()
        return real_event(self, conn, model_id, version, kind, *args)
    Catalog._event = event
elif point == "after-commit":  # the catalog committed, the command has not returned
    then_die(Catalog, "update_aliases" if op != "register" else "add_version")
else:
    raise SystemExit(f"unknown point {point}")

if op == "register":
    reg.register(spec["package"])
elif op == "release":
    reg.release("pets", 1, holdout=spec["holdout"], measure=False)
elif op == "canary":
    reg.release("pets", 3, canary=10, measure=False)
elif op == "promote":
    reg.promote("pets")
elif op == "rollback":
    reg.rollback("pets")
print("survived", flush=True)
"""


@dataclass(frozen=True)
class Op:
    """An operation: the aliases before and after it (alias -> (version, weight)), the newest version after."""

    name: str
    kind: str  # the event its catalog transaction writes
    before: dict[str, tuple[int, int | None]]
    after: dict[str, tuple[int, int | None]]
    latest_before: int = 3
    latest_after: int = 3


OPS = {o.name: o for o in [
    Op("register", "register", {}, {}, latest_before=2, latest_after=3),
    Op("release", "release", {}, {"production": (1, None)}),
    Op("canary", "release", {"production": (1, None)}, {"production": (1, None), "canary": (3, 10)}),
    Op("promote", "promote", {"production": (1, None), "canary": (3, 10)}, {"production": (3, None)}),
    Op("rollback", "rollback", {"production": (3, None)}, {"production": (1, None)}),
]}

# (operation, point, committed: whether the operation's catalog change is in when the process dies)
CATALOG_POINTS = [
    ("register", "after-store-put", False),
    ("register", "in-transaction", False),
    ("register", "after-commit", True),
    ("release", "holdout-recorded", False),
    ("release", "after-gate-event", False),
    ("release", "in-transaction", False),
    ("release", "after-commit", True),
    ("canary", "after-gate-event", False),
    ("canary", "in-transaction", False),
    ("canary", "after-commit", True),
    ("promote", "in-transaction", False),
    ("promote", "after-commit", True),
    ("rollback", "in-transaction", False),
    ("rollback", "after-commit", True),
]
STORE_POINTS = [  # points inside the store's writes: on both store code paths
    ("register", "store-copy", False),
    ("register", "store-commit", False),
    ("release", "holdout-files", False),
    ("release", "after-holdout-put", False),
]
# The fast set (`python -m pytest`) kills each operation once, one store write on each store path; CI's slow set
# (`-m slow`) kills at every point. Each case is a fresh process that dies (~4 s).
FAST = {"register-store-commit-local", "release-in-transaction-local", "canary-after-commit-local",
        "promote-in-transaction-local", "rollback-after-commit-local", "release-after-holdout-put-fsspec"}


def _case(op: str, point: str, committed: bool, store: str) -> object:
    name = f"{op}-{point}-{store}"
    return pytest.param(op, point, committed, store, id=name, marks=() if name in FAST else pytest.mark.slow)


CASES = [_case(op, point, committed, "local") for op, point, committed in CATALOG_POINTS + STORE_POINTS] + \
        [_case(op, point, committed, "fsspec") for op, point, committed in
         [*STORE_POINTS, ("register", "after-store-put", False)]]


# ------------------------------------------------------------------------------------------------ set-up
def _package(folder: Path, seed: int, tag: str) -> Path:
    """An image package like test_release's: `seed` sets its weights, `tag` only its provenance."""
    write_package(folder, image_model(3, 6, 5, 3, seed=seed)[0], data_kind="images", inputs=INPUTS["images"](3, 6, 5),
                  preprocessing=IMAGE_PREP, classes=["cat", "dog", "eel"])
    (folder / "provenance.json").write_text(json.dumps({"config": {"name": NAME}, "tag": tag}))
    write_manifest(folder)
    return folder


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """v1, v2 (other weights), v3 (v1's network: passes v1's gates) and a holdout labelled by v1; read-only."""
    tmp = tmp_path_factory.mktemp("kill-sources")
    found = {f"v{i}": _package(tmp / f"v{i}", seed, tag) for i, seed, tag in
             [(1, 0, "first"), (2, 1, "worse"), (3, 0, "same network")]}
    pixels = np.random.default_rng(5).integers(0, 256, size=(60, 6, 5, 3), dtype=np.uint8)
    labels = Package.open(found["v1"]).predict(pixels)["prediction"].to_numpy()
    np.savez(tmp / "holdout.npz", images=pixels, labels=labels.astype(str))
    return {**found, "holdout": tmp / "holdout.npz"}


class Setup:
    def __init__(self, tmp: Path, url: str, store: str, sources: dict[str, Path]) -> None:
        self.root = tmp / "reg"
        self.url = url
        self.store = f"local://{tmp / 'bucket' / 'store'}" if store == "fsspec" else None
        self.options = {"auto_mkdir": True} if store == "fsspec" else None  # a folder: no implicit parents
        self.sources = sources

    def open(self) -> Registry:
        return Registry(self.root, url=self.url, store=self.store, storage_options=self.options)

    @property
    def store_dir(self) -> Path:
        return Path(self.store[len("local://"):]) if self.store else self.root / "store"

    def run(self, reg: Registry, op: str) -> None:
        """The operation, in this process (the set-up before a case, and the redo after the kill)."""
        if op == "register":
            reg.register(self.sources["v3"])
        elif op == "release":
            given = self.sources["holdout"] if reg.catalog.holdout(NAME) is None else None  # frozen: not again
            reg.release(NAME, 1, holdout=given, measure=False)
        elif op == "canary":
            reg.release(NAME, 3, canary=10, measure=False)
        elif op == "promote":
            reg.promote(NAME)
        elif op == "rollback":
            reg.rollback(NAME)

    def prepare(self, op: str) -> None:
        """The registry as it is just before `op`."""
        with self.open() as reg:
            for v in ("v1", "v2") + (("v3",) if op != "register" else ()):
                reg.register(self.sources[v])
            if op in ("canary", "promote", "rollback"):
                self.run(reg, "release")
            if op == "promote":
                self.run(reg, "canary")
            if op == "rollback":
                reg.release(NAME, 3, measure=False)


# ------------------------------------------------------------------------------------------------ checks
def _aliases(reg: Registry) -> dict[str, tuple[int, int | None]]:
    return {k: (a.version, a.weight) for k, a in reg.catalog.aliases(NAME).items()}


def check_consistent(reg: Registry, setup: Setup) -> None:
    """What must hold after any kill: the catalog points only at complete, verifying content in the store, and
    its alias rows and its event log tell the same story."""
    versions = reg.versions(NAME)
    assert [v.number for v in versions] == list(range(1, len(versions) + 1))  # gapless
    for v in versions:
        assert reg.store.has(v.digest)
        assert Package.open(reg.store.open(v.digest)).signature  # verifies, opens in the runtime
    history = reg.history(NAME)
    registered = [(e.version, e.details.get("digest")) for e in history if e.kind == "register"]
    assert registered == [(v.number, v.digest) for v in versions]  # one register event per version, no more

    holdout = reg.catalog.holdout(NAME)
    if holdout is not None:
        assert open_holdout(reg.store, holdout).digest == holdout
    aliases = _aliases(reg)
    assert all(1 <= number <= len(versions) for number, _ in aliases.values())
    replayed: dict[str, tuple[int, int | None]] = {}  # the alias state the events describe, move by move
    for e in history:
        for alias, move in ((e.details or {}).get("aliases") or {}).items():
            before = None if move["from"] is None else (move["from"]["version"], move["from"]["weight"])
            assert before == replayed.get(alias), (e, replayed)  # no move happened without its event
            if move["to"] is None:
                replayed.pop(alias, None)
            else:
                replayed[alias] = (move["to"]["version"], move["to"]["weight"])
    assert replayed == aliases  # and no event claims a move that is not in the alias rows
    if holdout is None:
        assert not aliases and not [e for e in history if e.kind == "gate"]  # no gate ran without the holdout

    for digest in reg.store.digests():  # everything visible as a package is a complete, verifying one
        assert Package.open(reg.store.open(digest))
    packages = setup.store_dir / PACKAGES
    for entry in packages.iterdir() if packages.is_dir() else []:
        if not entry.name.startswith("."):  # temp folders (".tmp-...") are no package by name
            assert reg.store.has(entry.name) or not (entry / MANIFEST).exists(), entry  # manifest-less: absent


def check_clean(setup: Setup) -> None:
    """After a successful redo: no temporaries, no partial package or holdout left."""
    for area, commit in ((PACKAGES, MANIFEST), (HOLDOUTS, INDEX)):
        folder = setup.store_dir / area
        for entry in folder.iterdir() if folder.is_dir() else []:
            assert not entry.name.startswith("."), f"{area}/{entry.name} left behind"
            assert (entry / commit).is_file(), f"{area}/{entry.name} has no {commit}"


# ------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize(("op", "point", "committed", "store"), CASES)
def test_a_killed_operation_leaves_store_and_catalog_consistent(
        catalog_url: str, tmp_path: Path, sources: dict[str, Path], op: str, point: str, committed: bool,
        store: str) -> None:
    setup = Setup(tmp_path, catalog_url, store, sources)
    setup.prepare(op)
    spec = {"root": str(setup.root), "url": catalog_url, "store": setup.store, "options": setup.options,
            "op": op, "point": point, "kind": OPS[op].kind, "package": str(sources["v3"]),
            "holdout": str(sources["holdout"])}
    child = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], cwd=REPO, timeout=180,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stdout, child.stderr[-3000:])

    expected = OPS[op]
    with setup.open() as reg:
        check_consistent(reg, setup)
        latest = reg.versions(NAME)[-1].number
        assert (latest, _aliases(reg)) == ((expected.latest_after, expected.after) if committed else
                                           (expected.latest_before, expected.before))
        if op == "register":
            digest = package_digest(sources["v3"])
            assert reg.store.has(digest) == (point not in ("store-copy", "store-commit"))
            if store == "fsspec" and point == "store-copy":  # half an upload is there, and is no package
                assert (setup.store_dir / PACKAGES / digest).is_dir() and not reg.store.has(digest)
        if op == "release":
            held = point not in ("holdout-files", "after-holdout-put")
            assert (reg.catalog.holdout(NAME) is not None) == held

        if op == "register":  # a retried register: v3, new or found again
            again = reg.register(sources["v3"])
            assert (again.version, again.new) == (3, not committed)
        elif not committed:
            setup.run(reg, op)
        assert (reg.versions(NAME)[-1].number, _aliases(reg)) == (expected.latest_after, expected.after)
        check_consistent(reg, setup)
        if op in ("release", "canary"):
            assert [e.kind for e in reg.history(NAME)][-1] == "release"
    check_clean(setup)
