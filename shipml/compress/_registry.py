"""The compressor registry: `@register_compressor("int8")`, `create_compressor(name)`, `list_compressors()`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from shipml.errors import ConfigError

if TYPE_CHECKING:
    from shipml.compress.base import Compressor

__all__ = ["create_compressor", "get_compressor_class", "list_compressors", "register_compressor"]

_REGISTRY: dict[str, type[Compressor]] = {}
C = TypeVar("C", bound="type[Compressor]")


def register_compressor(name: str) -> Callable[[C], C]:
    def deco(cls: C) -> C:
        if name in _REGISTRY:
            raise ValueError(f"compressor {name!r} is registered twice ({_REGISTRY[name].__name__}, {cls.__name__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def list_compressors() -> list[str]:
    return sorted(_REGISTRY)


def get_compressor_class(name: str) -> type[Compressor]:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown compression method {name!r}; choose from {', '.join(list_compressors())}")
    return _REGISTRY[name]


def create_compressor(name: str, **kwargs: Any) -> Compressor:
    return get_compressor_class(name)(**kwargs)
