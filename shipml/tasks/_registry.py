"""The task registry: one dict, one decorator, `create_task`, `list_tasks`.

Adding a task family is adding one module that defines a `Task` subclass decorated with
`@register_task("name")` and importing it in `shipml/tasks/__init__.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from shipml.errors import ConfigError

if TYPE_CHECKING:
    from shipml.tasks.base import Task

__all__ = ["create_task", "get_task_class", "list_tasks", "register_task"]

_TASKS: dict[str, type[Task]] = {}
T = TypeVar("T", bound="type[Task]")


def register_task(name: str) -> Callable[[T], T]:
    """Class decorator: register a Task subclass under `name` (must be unique)."""

    def deco(cls: T) -> T:
        if name in _TASKS:
            raise ValueError(f"task {name!r} is already registered (by {_TASKS[name].__qualname__})")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return deco


def list_tasks() -> list[str]:
    """Names of every registered task, sorted."""
    return sorted(_TASKS)


def get_task_class(name: str) -> type[Task]:
    """The Task class registered as `name`; unknown names raise and list the valid ones."""
    try:
        return _TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; registered tasks: {', '.join(list_tasks())}") from None


def create_task(name: str, **kwargs: Any) -> Task:
    """Instantiate the task registered as `name`."""
    return get_task_class(name)(**kwargs)
