"""Fixtures shared by every test room: an isolated cache and the path of ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets a cache of its own: no test reads what another one left behind."""
    monkeypatch.setenv("SHIPML_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is missing (the project expects ../shared/data beside the checkout)")
    return SHARED_DATA


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
def email_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 real ham and 24 real spam messages from SpamAssassin, as a folder of raw emails per label."""
    import tarfile

    root = tmp_path_factory.mktemp("mail") / "mail"
    for archive, label in (("20030228_easy_ham.tar.bz2", "ham"), ("20030228_spam.tar.bz2", "spam")):
        (root / label).mkdir(parents=True)
        with tarfile.open(shared_data / "spamassassin" / archive) as tar:
            taken = 0
            for m in tar:
                if m.isfile() and "." in Path(m.name).name and taken < 24:
                    (root / label / Path(m.name).name).write_bytes(tar.extractfile(m).read())  # type: ignore[union-attr]
                    taken += 1
    return root


@pytest.fixture(scope="session")
def text_run(email_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 fine-tuned for 2 epochs on 48 real emails at 32 tokens, threshold tuned for spam F1."""
    return _train({"name": "spam", "data": {"path": str(email_dir), "split": {"train": 0.6, "val": 0.2, "test": 0.2}},
                   "task": {"name": "text-classification", "threshold": {"strategy": "max_f1", "positive": "spam"}},
                   "model": {"arch": "transformer", "max_length": 32},
                   "train": {"epochs": 2, "batch_size": 8, "lr": 1e-4}}, tmp_path_factory)
