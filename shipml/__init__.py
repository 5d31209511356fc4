"""shipml: from a labeled dataset to a trained, evaluated, reported model — and on to a released service.

    import shipml
    run = shipml.train("shipml.yaml")       # -> Run (runs/<id>/)
    run.metrics["test"]["accuracy"]
    run.predict(frame_or_images)
"""

__version__ = "0.1.0"

from shipml.config import Config, load_config
from shipml.errors import (
    ConfigError,
    DataError,
    ExportError,
    RegistryError,
    ServeError,
    ShipmlError,
    TrainError,
)

# torch-backed names load on first use, so `import shipml.runtime` (serving) never pulls in torch
_LAZY = {"Run": "shipml.run", "train": "shipml.run", "list_tasks": "shipml.tasks"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'shipml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

__all__ = [
    "Config",
    "ConfigError",
    "DataError",
    "ExportError",
    "RegistryError",
    "Run",
    "ServeError",
    "ShipmlError",
    "TrainError",
    "__version__",
    "list_tasks",
    "load_config",
    "train",
]
