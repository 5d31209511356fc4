"""The runtime room: run an exported package with onnxruntime, without torch or the training code.

A package (docs/package.md) is a folder with model.onnx, signature.json, assets/, metrics.json,
provenance.json and MANIFEST.json. This room is its only reader, and owns the format constants and the
manifest/atomic-write helpers the writer (`shipml.export`) uses, so reader and writer cannot drift:

    Predictor(spec, assets)             the one path raw input -> feeds -> prediction, around any network
                                        (`Package` and `Run.predict` both run through it)
    Package.open(path) -> Package       verify the manifest, load the signature; .predict(raw) -> DataFrame
    ImageGenerator(spec)                (class, n, seed) -> images around any generator network (Package.generate)
    EncodedImages, RawEmails            client payloads (image bytes, raw messages): decoded, never read as paths
    measure(package, raw) -> dict       latency / throughput / size / peak memory (measure_in_subprocess:
                                        the same in a fresh process, `python -m shipml.runtime.measure_main`)
    FORMAT, write_manifest, verify_manifest, atomic_dir, package_size

It may import numpy, pandas, Pillow, onnxruntime and tokenizers (the last two only when a session or a
tokenizer is first needed), `shipml.errors` and `shipml.core` (the file readers training uses too); never
torch, transformers, pydantic or the other rooms, so `pip install shipml[serve]`-style installs predict.
"""

from __future__ import annotations

from shipml.runtime.format import FORMAT, atomic_dir, package_size, verify_manifest, write_manifest
from shipml.runtime.generate import ImageGenerator
from shipml.runtime.inputs import EncodedImages, RawEmails
from shipml.runtime.package import Package
from shipml.runtime.predict import Predictor, decide
from shipml.runtime.timing import measure, measure_in_subprocess

__all__ = [
    "FORMAT",
    "EncodedImages",
    "ImageGenerator",
    "Package",
    "Predictor",
    "RawEmails",
    "atomic_dir",
    "decide",
    "measure",
    "measure_in_subprocess",
    "package_size",
    "verify_manifest",
    "write_manifest",
]
