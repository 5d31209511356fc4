"""Config messages for the model section: say what to set in shipml's words, not pydantic's discriminator terms."""

from __future__ import annotations

import pytest

from shipml.config import parse_config
from shipml.errors import ConfigError

BASE = {"data": {"path": "x.csv"}, "task": {"name": "tabular-classification"}}


def _message(model: object = None, overrides: list[str] | None = None) -> str:
    raw = dict(BASE) if model is None else {**BASE, "model": model}
    with pytest.raises(ConfigError) as err:
        parse_config(raw, overrides=overrides)
    return str(err.value)


def test_set_a_model_field_without_arch_names_arch_and_the_fix() -> None:
    msg = _message(overrides=["model.hidden=[8]"])
    assert "model.arch is missing; set model.arch: cnn|mlp|transformer" in msg
    assert "--set model.arch=mlp" in msg  # hidden is a field of mlp only
    assert "task's default" in msg
    assert "discriminator" not in msg and "tag" not in msg


def test_fields_shared_by_several_archs_name_them_all() -> None:
    msg = _message({"dropout": 0.2})
    assert "model.arch is missing" in msg and "cnn, mlp, transformer" in msg and "--set" not in msg


def test_unknown_arch_lists_the_choices() -> None:
    msg = _message({"arch": "rnn"})
    assert "model.arch: 'rnn' is not an architecture; set model.arch: cnn|mlp|transformer" in msg


def test_a_field_of_another_arch_is_placed_under_model_not_model_arch() -> None:
    msg = _message({"arch": "cnn", "hidden": [8]})
    assert "model.hidden: not a field of arch cnn; it belongs to arch mlp" in msg
    assert "model.cnn" not in msg


def test_bad_values_inside_an_arch_keep_the_plain_path() -> None:
    msg = _message({"arch": "mlp", "hidden": [0]})
    assert "model.hidden: every hidden width must be >= 1, got [0] (arch mlp)" in msg
    assert "Value error" not in msg and "model.mlp" not in msg


def test_model_given_as_a_word() -> None:
    msg = _message("mlp")
    assert "model: expected a section such as {arch: mlp" in msg
