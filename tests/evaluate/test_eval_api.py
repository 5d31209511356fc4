"""The evaluate room's public surface is exactly its __all__, and every public name is documented."""

from __future__ import annotations

import types

import shipml.evaluate as evaluate


def test_all_lists_the_public_names() -> None:
    public = {
        name
        for name, value in vars(evaluate).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    assert set(evaluate.__all__) == public
    for name in evaluate.__all__:
        value = getattr(evaluate, name)
        assert name.isupper() or value.__doc__, f"{name} has no docstring"
