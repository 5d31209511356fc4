"""Fixtures of the registry tests: a catalog URL on every backend the catalog supports.

`catalog_url` runs a test on a fresh SQLite file and on a fresh PostgreSQL schema. PostgreSQL comes from
`SHIPML_TEST_POSTGRES_URL` (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test). Without it, or with the
server unreachable, the postgres cases skip with the reason, except under `SHIPML_TEST_POSTGRES_REQUIRED=1`
(CI), where they fail: a CI run must never pass by skipping the backend that scale-out depends on.
Each postgres test gets its own schema (through `search_path` in the URL), dropped afterwards, so tests
never see each other's rows and may run while other things use the same database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

BACKENDS = ["sqlite", "postgres"]


def _postgres_server() -> sa.URL:
    """The test server's URL, or skip/fail (see the module docstring) when there is none to use."""
    required = os.environ.get("SHIPML_TEST_POSTGRES_REQUIRED") == "1"
    raw = os.environ.get("SHIPML_TEST_POSTGRES_URL")
    if not raw:
        reason = "SHIPML_TEST_POSTGRES_URL is not set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
        if required:
            pytest.fail(f"SHIPML_TEST_POSTGRES_REQUIRED=1 but {reason}")
        pytest.skip(reason)
    url = sa.make_url(raw)
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as exc:
        reason = f"PostgreSQL at {url.render_as_string(hide_password=True)} is unreachable: {exc.orig}"
        if required:
            pytest.fail(f"SHIPML_TEST_POSTGRES_REQUIRED=1 but {reason}")
        pytest.skip(reason)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose connections live in a fresh, empty schema of the test database (dropped afterwards)."""
    server = _postgres_server()
    schema = f"shipml_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, connect_args={"connect_timeout": 5})
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield server.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A URL of a SQLite file that does not exist yet (the catalog creates it)."""
    return f"sqlite:///{tmp_path / 'registry' / 'registry.db'}"


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty catalog database URL on each backend: a SQLite file, and a PostgreSQL schema."""
    return request.getfixturevalue(f"{request.param}_url")
