"""The registry room: every package becomes a numbered version of a named model (docs/registry.md).

    names.py      model names: `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`, checked at every entry point
    store.py      content-addressed package store (local folder), verified on every open
    store_remote.py  the same on an fsspec URL (s3://...), MANIFEST.json written last
    catalog.py    SQLAlchemy 2 catalog (SQLite WAL by default, PostgreSQL by URL) + Alembic migrations:
                  models, versions, aliases (production, canary + weight), append-only event log

    holdout.py    a model's frozen evaluation set (its first release's test rows and labels, or a user's file),
                  content-addressed in the store; each package's outputs on it cached by package digest
    gates.py      release gates: metrics against production, the paired test, p99 / size, signature
    release.py    release (gated), promote, rollback: alias moves and their events in one transaction
    _api.py       `Registry` (store + catalog): `register`, `models`, `versions`, `version`, `history`, `package`,
                  `release`, `promote`, `rollback`

Builds on `shipml.runtime` (the package format and its verification) and reads a run's test split through
`shipml.data` for the holdout; never imports torch or training code, so a server reads the same catalog and
store (shipml/serve imports only the catalog, the store and the names).
"""

from shipml.registry._api import Registered, Registry, default_root, resolve_package
from shipml.registry.names import check_name

__all__ = ["Registered", "Registry", "check_name", "default_root", "resolve_package"]
