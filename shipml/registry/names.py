"""Model names: checked at every entry point (CLI, Python API, catalog, store paths).

A name becomes part of file paths, URLs and log lines, so it is a short plain token: a letter or digit,
then up to 63 letters, digits, dots, underscores or hyphens. Nothing else gets near the file system.
"""

from __future__ import annotations

import re

from shipml.errors import RegistryError

__all__ = ["NAME_PATTERN", "check_name", "check_version"]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(name: object) -> str:
    """`name` if it is a valid model name, else a RegistryError that shows it safely and says what is allowed."""
    if isinstance(name, str) and NAME_PATTERN.fullmatch(name):
        return name
    shown = repr(name)[:80] + ("..." if len(repr(name)) > 80 else "")
    raise RegistryError(f"model name {shown} is not allowed: use 1-64 letters, digits, '.', '_' or '-', starting "
                        "with a letter or digit (e.g. spam, mnist-cnn, fraud_v2)")


def check_version(version: object) -> int:
    """A version number: a positive whole number (1, 2, ...), also given as text on the command line."""
    if isinstance(version, bool):
        raise RegistryError(f"version {version!r} is not a version number; versions are 1, 2, 3, ...")
    text = version.strip() if isinstance(version, str) else None
    if text is not None and text.isascii() and text.isdigit() and len(text) <= 9:  # not '²' (isdigit, not int)
        version = int(text)
    if isinstance(version, int) and version >= 1:
        return version
    raise RegistryError(f"version {version!r} is not a version number; versions are 1, 2, 3, ...")
