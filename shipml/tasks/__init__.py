"""Task families. Each module registers one or more `Task` subclasses; see `_registry.py`."""

from shipml.tasks import gan, image, tabular, text  # noqa: F401  (registers the tasks)
from shipml.tasks._registry import create_task, get_task_class, list_tasks, register_task
from shipml.tasks.base import ClassificationTask, RegressionTask, Task

__all__ = [
    "ClassificationTask",
    "RegressionTask",
    "Task",
    "create_task",
    "get_task_class",
    "list_tasks",
    "register_task",
]
