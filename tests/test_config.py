"""Config: validation messages name the field, the value and the fix; overrides; YAML errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shipml.config import Config, apply_overrides, dump_config, load_config, parse_config
from shipml.errors import ConfigError

BASE = {"data": {"path": "sklearn:iris"}, "task": {"name": "tabular-classification"}}


def test_defaults_fill_in() -> None:
    cfg = parse_config(BASE)
    assert cfg.train.epochs == 10
    assert cfg.data.split.train == pytest.approx(0.8)
    assert cfg.model is None


def test_typo_names_field_path() -> None:
    with pytest.raises(ConfigError, match=r"train\.epoch: unknown field"):
        parse_config({**BASE, "train": {"epoch": 3}})


def test_bad_value_names_path_value_and_allowed() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, "train": {"optimizer": "adam"}})
    msg = str(err.value)
    assert "train.optimizer" in msg and "'adam'" in msg and "adamw" in msg and "sgd" in msg


def test_split_must_sum_to_one() -> None:
    with pytest.raises(ConfigError, match=r"data\.split.*must be 1\.0"):
        parse_config({**BASE, "data": {"path": "x.csv", "split": {"train": 0.8, "val": 0.3, "test": 0.1}}})


def test_missing_required_section() -> None:
    with pytest.raises(ConfigError, match=r"task: required field is missing"):
        parse_config({"data": {"path": "x.csv"}})


def test_model_arch_discriminates() -> None:
    cfg = parse_config({**BASE, "model": {"arch": "mlp", "hidden": [8]}})
    assert cfg.model is not None and cfg.model.arch == "mlp"
    with pytest.raises(ConfigError, match="model"):
        parse_config({**BASE, "model": {"arch": "resnet"}})


def test_overrides_parse_yaml_values() -> None:
    raw = apply_overrides(BASE, ["train.epochs=3", "train.lr=0.01", "model.hidden=[4, 2]", "model.arch=mlp"])
    cfg = parse_config(raw)
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.01
    assert cfg.model is not None and cfg.model.hidden == [4, 2]  # type: ignore[union-attr]
    assert BASE["data"] == {"path": "sklearn:iris"} and "train" not in BASE  # input untouched


@pytest.mark.parametrize("bad", ["train.epochs", "=3", "data.path.x=1"])
def test_bad_overrides(bad: str) -> None:
    with pytest.raises(ConfigError, match="--set"):
        apply_overrides(BASE, [bad])


def test_override_validation_error_names_field() -> None:
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        parse_config(BASE, overrides=["train.epochs=0"])


def test_load_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_config(empty)


def test_relative_data_path_resolved_against_config_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.csv").write_text("a,label\n1,x\n")
    p = tmp_path / "sub" / "c.yaml"
    p.write_text(yaml.safe_dump({"data": {"path": "d.csv"}, "task": {"name": "tabular-classification"}}))
    cfg = load_config(p)
    assert Path(cfg.data.path) == (tmp_path / "sub" / "d.csv").resolve()


def test_dump_roundtrip() -> None:
    cfg = parse_config({**BASE, "model": {"arch": "cnn"}, "train": {"epochs": 2}})
    again = Config.model_validate(yaml.safe_load(dump_config(cfg)))
    assert again == cfg


def test_config_is_frozen() -> None:
    cfg = parse_config(BASE)
    with pytest.raises(Exception, match="frozen"):
        cfg.train.epochs = 5  # type: ignore[misc]
