"""The one exception tree of shipml.

Every error a user can cause ends in one of these, with a message that says what was wrong and how
to fix it. The CLI prints the message (no traceback) and exits with status 2.

    ShipmlError
    ├── ConfigError     a config file, an override or an argument is invalid
    ├── DataError       a data set cannot be read, or is unusable after cleaning
    ├── TrainError      training cannot start or continue (bad checkpoint, run dir in use, ...)
    ├── ExportError     a model cannot be exported or packaged
    ├── RegistryError   the artifact store or catalog refuses an operation
    └── ServeError      the server cannot load or answer

    ShipmlWarning (a UserWarning): something was accepted but may not be what the user meant
    (e.g. duplicate column names in a CSV header)
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "ExportError",
    "RegistryError",
    "ServeError",
    "ShipmlError",
    "ShipmlWarning",
    "TrainError",
]


class ShipmlError(Exception):
    """Base class of every error shipml raises on purpose."""


class ConfigError(ShipmlError):
    """A config file, a `--set` override or a command-line argument is invalid."""


class DataError(ShipmlError):
    """A data set is missing, unreadable, or unusable after cleaning."""


class TrainError(ShipmlError):
    """Training cannot start or continue."""


class ExportError(ShipmlError):
    """A model cannot be exported or packaged."""


class RegistryError(ShipmlError):
    """The artifact store or catalog refuses an operation."""


class ServeError(ShipmlError):
    """The server cannot load a model or answer a request."""


class ShipmlWarning(UserWarning):
    """Input was accepted, but may not mean what the user intended; the message says what to check."""
