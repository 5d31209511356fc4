"""The public surface is small and explicit."""

from __future__ import annotations

import subprocess
import sys

import shipml

EXPECTED = {
    "Config", "ConfigError", "DataError", "ExportError", "RegistryError", "Run", "ServeError", "ShipmlError",
    "TrainError", "__version__", "list_tasks", "load_config", "train", "export_run", "compress_run", "Package",
}


def test_all_is_explicit_and_resolves() -> None:
    assert set(shipml.__all__) == EXPECTED
    for name in shipml.__all__:
        assert getattr(shipml, name) is not None


def test_error_tree() -> None:
    for name in ("ConfigError", "DataError", "TrainError", "ExportError", "RegistryError", "ServeError"):
        assert issubclass(getattr(shipml, name), shipml.ShipmlError)


def test_import_shipml_does_not_import_torch() -> None:
    code = "import sys, shipml, shipml.config, shipml.errors; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_train_stays_the_function_after_the_training_room_is_imported() -> None:
    import shipml.training  # a submodule named like the API function would shadow it

    assert callable(shipml.train) and shipml.train.__module__ == "shipml.run"
