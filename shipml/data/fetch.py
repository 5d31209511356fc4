"""Public data set fetchers: one registry, atomic output, integrity checks in the report.

    @register_fetcher("name")        a function (build_dir, from_dir, log) -> FetchReport
    list_fetchers()                  registered names
    fetch_dataset(name, to, ...)     runs one into a fresh folder `to`, writes `to/MANIFEST.json`

A fetcher writes into a temporary folder beside `to` that is renamed to `to` only when everything
has been written, so an interrupted fetch never leaves a half-filled folder that looks finished. A
user's existing folder is never modified: a non-empty `to` is an error. Downloads go to a temporary
folder in the shipml cache and are removed afterwards; machines without a network use `from_dir`
(the CLI's `--from DIR`) with archives downloaded elsewhere.

Built-in fetchers live in their own modules (`fetch_*.py`), imported on first use of the registry
rather than when `shipml.data` is imported.
"""

from __future__ import annotations

import http.client
import importlib
import json
import os
import secrets
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

from shipml.data.cache import cache_subdir
from shipml.errors import DataError

__all__ = ["FetchReport", "Fetcher", "download", "fetch_dataset", "list_fetchers", "register_fetcher"]

DOWNLOAD_TIMEOUT_S = 60.0  # per network read, not per file
_BUILTIN = ("shipml.data.fetch_spamassassin",)


@dataclass
class FetchReport:
    """What a fetch wrote and what it found wrong; `to_dict()` is also `to/MANIFEST.json`."""

    name: str
    source: str  # where the data set is published
    origin: str  # "download" or the folder the archives were read from
    parts: list[dict[str, Any]] = field(default_factory=list)  # archive, url, sha256, label, folder, messages...
    labels: dict[str, int] = field(default_factory=dict)  # label -> messages written
    md5_mismatches: list[dict[str, str]] = field(default_factory=list)  # file, expected, actual (kept)
    duplicates: list[dict[str, str]] = field(default_factory=list)  # file (not written), same_as (kept)
    skipped: list[dict[str, str]] = field(default_factory=list)  # item, reason
    notes: list[str] = field(default_factory=list)
    to: str = ""
    fetched_at: str = ""
    seconds: float = 0.0

    @property
    def messages(self) -> int:
        """Files written (after dropping duplicates)."""
        return sum(self.labels.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the manifest)."""
        return {**asdict(self), "messages": self.messages}


class Fetcher(Protocol):
    def __call__(self, build: Path, from_dir: Path | None, log: Callable[[str], None]) -> FetchReport: ...


F = TypeVar("F", bound=Fetcher)
_FETCHERS: dict[str, Fetcher] = {}


def register_fetcher(name: str) -> Callable[[F], F]:
    """Decorator: register a fetcher under `name` (must be unique)."""

    def deco(fn: F) -> F:
        if name in _FETCHERS:
            raise ValueError(f"fetcher {name!r} is already registered (by {_FETCHERS[name].__qualname__})")
        _FETCHERS[name] = fn
        return fn

    return deco


def _load_builtins() -> None:
    for module in _BUILTIN:
        importlib.import_module(module)


def list_fetchers() -> list[str]:
    """Names of every registered fetcher, sorted."""
    _load_builtins()
    return sorted(_FETCHERS)


def _check_target(to: Path) -> None:
    if to.is_file() or (to.exists() and not to.is_dir()):
        raise DataError(f"{to} already exists and is a file; choose another --to")
    if to.is_dir() and any(to.iterdir()):
        raise DataError(f"{to} already exists and is not empty; delete it or choose another --to")


def fetch_dataset(
    name: str, to: Path, *, from_dir: Path | None = None, log: Callable[[str], None] | None = None
) -> FetchReport:
    """Fetch the registered data set `name` into the new folder `to` (see the module docstring)."""
    _load_builtins()
    if name not in _FETCHERS:
        raise DataError(f"unknown data set {name!r}; available: {', '.join(sorted(_FETCHERS))}")
    to = Path(to).expanduser()
    _check_target(to)
    if from_dir is not None:
        from_dir = Path(from_dir).expanduser()
        if not from_dir.is_dir():
            raise DataError(f"--from {from_dir}: no such folder (it should hold the downloaded archives)")
    say = log or (lambda _msg: None)
    try:
        to.parent.mkdir(parents=True, exist_ok=True)
        build = to.parent / f".{to.name}.tmp-{secrets.token_hex(6)}"
        build.mkdir()  # not mkdtemp: its 0700 mode would become the mode of `to`
    except OSError as err:
        raise DataError(f"cannot create {to} ({err.strerror or err}); choose a writable --to") from None
    start = time.perf_counter()
    try:
        report = _FETCHERS[name](build, from_dir, say)
        report.to = str(to.absolute())
        report.fetched_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        report.seconds = round(time.perf_counter() - start, 2)
        (build / "MANIFEST.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        _publish(build, to)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return report


def _publish(build: Path, to: Path) -> None:
    """Rename the finished folder into place; an empty `to` is replaced, anything else is kept."""
    try:
        os.rename(build, to)  # POSIX replaces an empty folder atomically
        return
    except OSError:
        pass
    _check_target(to)  # someone wrote into it meanwhile: report that, touch nothing
    if to.is_dir():
        to.rmdir()  # empty (just checked), e.g. on Windows where rename never replaces a folder
    os.rename(build, to)


def download(url: str, dest: Path, *, what: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Download `url` to `dest`; any network failure is a DataError that points at `--from`."""
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as fh:
            shutil.copyfileobj(resp, fh, 1 << 20)
        os.replace(part, dest)
    except (OSError, http.client.HTTPException, ValueError) as err:  # URLError and timeouts are OSErrors
        part.unlink(missing_ok=True)
        reason = getattr(err, "reason", None) or err
        raise DataError(
            f"could not download {url} ({reason}); this machine may be offline. Download the archives "
            f"elsewhere, copy them into a folder and run `shipml datasets fetch {what} --to DIR --from THAT_FOLDER`"
        ) from None


def download_dir() -> Path:
    """A fresh temporary folder in the cache for one fetch's downloads (the caller removes it)."""
    return Path(tempfile.mkdtemp(dir=cache_subdir("downloads"), prefix=".tmp-"))
