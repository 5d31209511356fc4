"""Every shipped example config loads and names a registered task; docs/config.md documents every field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from shipml.config import Config, load_config
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


def _fields(model: type[BaseModel]) -> set[str]:
    names = set()
    for name, f in model.model_fields.items():
        names.add(name)
        for sub in getattr(f.annotation, "__args__", (f.annotation,)):
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                names |= _fields(sub)
    return names


def test_config_reference_documents_every_field() -> None:
    from shipml.config import CNNConfig, MLPConfig

    doc = (ROOT / "docs" / "config.md").read_text()
    missing = sorted(n for n in _fields(Config) | _fields(CNNConfig) | _fields(MLPConfig) if f"`{n}`" not in doc)
    assert not missing, f"docs/config.md lacks {missing}"
