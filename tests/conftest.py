"""Fixtures shared by every test room: an isolated cache, the small real data in tests/fixtures, the path of
the full data sets in ../shared/data, and catalog databases (a SQLite file; a fresh PostgreSQL schema).

`catalog_url` runs a test on a fresh SQLite file and on a fresh PostgreSQL schema. PostgreSQL comes from
`SHIPML_TEST_POSTGRES_URL` (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test). Without it, or with the
server unreachable, the postgres cases skip with the reason, except under `SHIPML_TEST_POSTGRES_REQUIRED=1`
(CI), where they fail: a CI run must never pass by skipping the backend that scale-out depends on.
Each postgres test gets its own schema (through `search_path` in the URL), dropped afterwards, so tests
never see each other's rows and may run while other things use the same database."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

# $SHIPML_SHARED_DATA overrides the place (a folder that does not exist behaves like a fresh clone)
SHARED_DATA = Path(os.environ.get("SHIPML_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
SMALL_DATA = Path(__file__).resolve().parent / "fixtures"


def pytest_configure(config: pytest.Config) -> None:
    """Stop before collection when a library version known to break shipml is installed (shipml/core/versions.py):
    one clear line naming the version and the fix, instead of a traceback deep inside some test."""
    from shipml.core.versions import check_known_bad

    if problems := check_known_bad():
        raise pytest.UsageError("known-bad library versions installed:\n  " + "\n  ".join(problems))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets a cache of its own: no test reads what another one left behind."""
    monkeypatch.setenv("SHIPML_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The full data sets (SpamAssassin archives, mnist5k.tar.gz), for the tests that need all of them."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is missing (the full data sets live in ../shared/data beside the checkout, "
                    "or where $SHIPML_SHARED_DATA says)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def small_data() -> Path:
    """tests/fixtures, always there: spamassassin/{ham,spam}/ (30 real raw messages each) and mnist400.tar.gz
    (40 real digits per class, laid out like mnist5k.tar.gz). Read-only: copy before changing anything."""
    return SMALL_DATA


# ---------------------------------------------------------------------------------------------- trained runs
# Small real runs, trained once per test session and shared by the export and compress tests (which only
# read them, or write into copies). Each trains in seconds.

def _train(cfg: dict, tmp: pytest.TempPathFactory) -> Path:
    import shipml

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHIPML_CACHE", str(tmp.mktemp("run-cache")))
        cfg = {"output_dir": str(tmp.mktemp("runs")), "evaluate": {"bootstrap": 50}, **cfg}
        return shipml.train(cfg, quiet=True).path


@pytest.fixture(scope="session")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sklearn's 8x8 digits as an image folder, the quick start's CNN, 4 epochs (~96% test accuracy)."""
    from shipml.quickstart import QUICKSTART_CONFIG, write_digits

    data = write_digits(tmp_path_factory.mktemp("digits") / "digits")
    train = {**QUICKSTART_CONFIG["train"], "epochs": 4}
    return _train({**QUICKSTART_CONFIG, "name": "digits", "data": {"path": str(data)}, "train": train},
                  tmp_path_factory)


@pytest.fixture(scope="session")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Breast cancer, the tabular recipe's MLP with batch-norm, 8 epochs."""
    return _train({"name": "cancer", "data": {"path": "sklearn:breast_cancer"},
                   "task": {"name": "tabular-classification"},
                   "model": {"arch": "mlp", "hidden": [64, 32], "batchnorm": True},
                   "train": {"epochs": 8, "batch_size": 32, "lr": 1e-3}}, tmp_path_factory)


@pytest.fixture(scope="session")
def regression_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train({"name": "diabetes", "data": {"path": "sklearn:diabetes"}, "task": {"name": "tabular-regression"},
                   "model": {"arch": "mlp", "hidden": [32], "skip": True},
                   "train": {"epochs": 8, "batch_size": 32, "lr": 1e-3}}, tmp_path_factory)


@pytest.fixture(scope="session")
def email_dir(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 real ham and 24 real spam messages from SpamAssassin (the first of tests/fixtures in name order), as a
    folder of raw emails per label."""
    root = tmp_path_factory.mktemp("mail") / "mail"
    for label in ("ham", "spam"):
        (root / label).mkdir(parents=True)
        for path in sorted((small_data / "spamassassin" / label).iterdir())[:24]:
            shutil.copyfile(path, root / label / path.name)
    return root


@pytest.fixture(scope="session")
def text_run(email_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 fine-tuned for 2 epochs on 48 real emails at 32 tokens, threshold tuned for spam F1."""
    return _train({"name": "spam", "data": {"path": str(email_dir), "split": {"train": 0.6, "val": 0.2, "test": 0.2}},
                   "task": {"name": "text-classification", "threshold": {"strategy": "max_f1", "positive": "spam"}},
                   "model": {"arch": "transformer", "max_length": 32},
                   "train": {"epochs": 2, "batch_size": 8, "lr": 1e-4}}, tmp_path_factory)


@pytest.fixture(scope="session")
def generation_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sklearn's 8x8 digits, a narrow conditional DCGAN for 3 epochs, judged by a 2-epoch CNN on 200 + 200 real
    images (seconds; the samples are blobs, which is all the plumbing tests need)."""
    return _train({"name": "digits-gan", "data": {"path": "sklearn:digits"}, "task": {"name": "image-generation"},
                   "model": {"arch": "dcgan", "width": 8, "z_dim": 16, "grid": 4},
                   "train": {"epochs": 3, "batch_size": 64, "lr": 2e-4, "schedule": "constant", "threads": 1},
                   "evaluate": {"judge": {"epochs": 2, "samples": 200}}}, tmp_path_factory)


# ---------------------------------------------------------------------------------------------- catalogs
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
