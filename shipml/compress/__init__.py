"""The compression room: smaller, faster variants of a run's model, and the evidence to pick one.

    compress_run(run, methods=..., target=...) -> CompressResult    `shipml compress`
    list_compressors() / create_compressor(name)                   the registry (int8, fp16, prune, distill)
    parse_target(text, names) / pick(rows, constraints)            `--target "p99_ms<=15, accuracy_drop<=0.005"`

Every variant is a package (docs/package.md) under runs/<id>/variants/<name>/, measured through
`shipml.runtime` exactly as it will be served (docs/compress.md).
"""

from __future__ import annotations

from shipml.compress import distill, prune, quantize  # noqa: F401 (registers the compressors)
from shipml.compress._registry import create_compressor, get_compressor_class, list_compressors, register_compressor
from shipml.compress.base import Compressor
from shipml.compress.pipeline import CompressResult, compress_run, parse_methods
from shipml.compress.target import Constraint, parse_target, pick

__all__ = [
    "CompressResult",
    "Compressor",
    "Constraint",
    "compress_run",
    "create_compressor",
    "get_compressor_class",
    "list_compressors",
    "parse_methods",
    "parse_target",
    "pick",
    "register_compressor",
]
