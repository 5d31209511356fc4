"""Every shipped example config loads and names a registered task; docs/config.md documents every field."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipml.config import load_config
from shipml.data import infer_data
from shipml.tasks import get_task_class

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_loads(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # examples are written to be run from the repository root
    cfg = load_config(path)
    task = get_task_class(cfg.task.name).from_config(cfg)
    assert task.model_cfg is not None
    if cfg.data.path.startswith("sklearn:") or Path(cfg.data.path).exists():
        profile = infer_data(cfg.data.path)
        assert profile.rows > 0
    else:
        pytest.skip(f"{cfg.data.path} is not on this machine (../shared/data is expected beside the checkout)")


def test_config_reference_is_up_to_date() -> None:
    from shipml.scaffold import config_reference

    assert (ROOT / "docs" / "config.md").read_text() == config_reference(), (
        "docs/config.md is stale; regenerate it with the command at its top"
    )
