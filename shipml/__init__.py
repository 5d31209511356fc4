"""shipml: from a labeled dataset to a trained, evaluated, reported model — and on to a released service.

    import shipml
    run = shipml.train("shipml.yaml")       # -> Run (runs/<id>/)
    run.metrics["test"]["accuracy"]
    run.predict(frame_or_images)
    shipml.export_run(run.path)             # -> runs/<id>/package/ (ONNX, checked for parity)
    shipml.compress_run(run, methods="int8,distill+int8", target="accuracy_drop<=0.005")
    shipml.Package.open("runs/<id>/package").predict(rows)   # onnxruntime only
"""

__version__ = "0.1.0"

from shipml.errors import (
    ConfigError,
    DataError,
    ExportError,
    RegistryError,
    ServeError,
    ShipmlError,
    TrainError,
)

# names load on first use, so `import shipml.runtime` (prediction, serving) pulls in neither torch nor pydantic
_LAZY = {"Config": "shipml.config", "load_config": "shipml.config", "Run": "shipml.run", "train": "shipml.run",
         "list_tasks": "shipml.tasks", "export_run": "shipml.export",
         "compress_run": "shipml.compress", "Package": "shipml.runtime"}


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
    "Package",
    "RegistryError",
    "Run",
    "ServeError",
    "ShipmlError",
    "TrainError",
    "__version__",
    "compress_run",
    "export_run",
    "list_tasks",
    "load_config",
    "train",
]
