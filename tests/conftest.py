"""Fixtures shared by every test room: an isolated cache, the small real data in tests/fixtures, and the
path of the full data sets in ../shared/data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# $SHIPML_SHARED_DATA overrides the place (a folder that does not exist behaves like a fresh clone)
SHARED_DATA = Path(os.environ.get("SHIPML_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
SMALL_DATA = Path(__file__).resolve().parent / "fixtures"


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
