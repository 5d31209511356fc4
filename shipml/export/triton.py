"""A Triton Inference Server model repository from a package: `<name>/config.pbtxt` + `<name>/1/model.onnx`.

For users who outgrow shipml's server. Triton serves the ONNX graph only: preprocessing (tokenizer,
image normalisation, feature scaling) stays on the client, so the package's signature.json and assets
are copied beside config.pbtxt for the client to use.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from shipml.errors import ExportError
from shipml.runtime import Package, atomic_dir

__all__ = ["MAX_BATCH", "check_triton_name", "triton_config", "write_triton_repository"]

MAX_BATCH = 64
_TYPES = {"float32": "TYPE_FP32", "int64": "TYPE_INT64", "int32": "TYPE_INT32", "float16": "TYPE_FP16"}


def _dims(shape: list[object]) -> str:
    """Signature shape without the batch axis; named (dynamic) axes become -1."""
    return ", ".join(str(d) if isinstance(d, int) else "-1" for d in shape[1:])


def triton_config(pkg: Package, name: str) -> str:
    """config.pbtxt text: the ONNX Runtime backend, batching on the first axis, dynamic batching on."""
    sig = pkg.signature

    def tensor(t: dict[str, object]) -> str:
        dtype = _TYPES.get(str(t["dtype"]))
        if dtype is None:
            raise ExportError(f"tensor {t['name']!r} has dtype {t['dtype']!r}, which the Triton export does not map")
        shape = t["shape"]
        assert isinstance(shape, list)
        return f'  {{\n    name: "{t["name"]}"\n    data_type: {dtype}\n    dims: [ {_dims(shape)} ]\n  }}'

    inputs = ",\n".join(tensor(t) for t in sig["inputs"])
    outputs = ",\n".join(tensor(t) for t in sig["outputs"])
    return (f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {MAX_BATCH}\n'
            f"input [\n{inputs}\n]\noutput [\n{outputs}\n]\n"
            "dynamic_batching {\n  max_queue_delay_microseconds: 2000\n}\n"
            "instance_group [\n  {\n    count: 1\n    kind: KIND_CPU\n  }\n]\n")


def check_triton_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ExportError(f"Triton model name {name!r}: start with a letter or digit, then letters, digits, '_', "
                          "'-' or '.'")


def write_triton_repository(package: Path, out: Path, name: str) -> Path:
    """Write (atomically) `out/<name>/` from the package at `package`; returns the model folder."""
    check_triton_name(name)
    pkg = Package.open(package)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out / name) as tmp:
        (tmp / "1").mkdir()
        shutil.copyfile(pkg.path / "model.onnx", tmp / "1" / "model.onnx")
        (tmp / "config.pbtxt").write_text(triton_config(pkg, name))
        shutil.copyfile(pkg.path / "signature.json", tmp / "signature.json")
        if (pkg.path / "assets").is_dir():
            shutil.copytree(pkg.path / "assets", tmp / "assets")
    return out / name
