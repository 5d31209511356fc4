"""Names become paths and URLs: only plain tokens get through, and the error shows a hostile name safely."""

from __future__ import annotations

import pytest

from shipml.errors import RegistryError
from shipml.registry.names import check_name, check_version


@pytest.mark.parametrize("name", ["spam", "mnist-cnn", "fraud_v2", "a", "7up", "x.y", "a" * 64])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", "x\x00y", "a" * 65, "a" * 200, "", ".hidden", "-x", "_x",
                                  "sp am", "spam\n", "ünï", None, 3, ["spam"]])
def test_bad_names_are_refused(name: object) -> None:
    with pytest.raises(RegistryError, match="is not allowed: use 1-64 letters") as err:
        check_name(name)
    assert "\x00" not in str(err.value) and len(str(err.value)) < 300  # shown escaped and cut


@pytest.mark.parametrize("v,expected", [(1, 1), ("3", 3), (" 12 ", 12)])
def test_versions(v: object, expected: int) -> None:
    assert check_version(v) == expected


@pytest.mark.parametrize("v", [0, -1, "0", "v3", "1.5", 1.0, True, None, "", "²", "¹", "99999999999999999999"])
def test_bad_versions(v: object) -> None:
    with pytest.raises(RegistryError, match="not a version number"):
        check_version(v)
