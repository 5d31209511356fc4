"""Quantization with onnxruntime's tools, on a package's ONNX graph.

- `int8`: the task family chooses (`Task.int8_activations`). "dynamic" (transformers): weights int8 ahead of
  time, activations quantized per batch at run time: no calibration, robust to varying sequence lengths.
  "static" (CNNs, MLPs): QDQ, unsigned activations and signed weights, the layout onnxruntime's x86 VNNI
  kernels want, with activation ranges calibrated on training rows run through the package's own
  preprocessing.
- `fp16`: float16 weights and compute inside the graph, float32 inputs and outputs (measured in the
  frontier: onnxruntime's CPU kernels gain little from it; it halves the file).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from shipml._console import Reporter
from shipml.compress._registry import register_compressor
from shipml.compress.base import Compressor
from shipml.core.machine import cpu_has_vnni, cpu_kind
from shipml.errors import ConfigError, ExportError
from shipml.export import ExportContext
from shipml.runtime import Package

__all__ = ["FP16", "Int8", "calibration_rows"]


def calibration_rows(ctx: ExportContext, n: int, seed: int) -> np.ndarray:
    """`n` training rows (seeded), the calibration set of static quantization."""
    if n < 1:
        raise ConfigError(f"compress.quantize.calibration_rows: {n}; static int8 needs at least 1 calibration row")
    train = ctx.data.indices("train")
    if not len(train):
        raise ConfigError("static int8 needs training rows to calibrate on, and the training split is empty")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(train, size=min(n, len(train)), replace=False))


class _Reader(CalibrationDataReader):
    """onnxruntime's CalibrationDataReader protocol: feeds dicts, then None."""

    def __init__(self, pkg: Package, raw: Any, batch_size: int = 32) -> None:
        prepared = pkg.prepare(raw)
        rows = np.arange(len(prepared))
        names = [i["name"] for i in pkg.signature["inputs"]]  # the graph's inputs (an unused `cat` is not one)
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            [{n: f[n] for n in names} for f in (pkg.preprocessor.feeds(prepared, rows[s : s + batch_size])
                                                for s in range(0, len(rows), batch_size))]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # not needed: each calibration pass makes a new reader
        pass


def _quiet() -> None:
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # "please pre-process" notes


# Weights quantized to 7 bits (onnxruntime's reduce_range). On x86 CPUs without VNNI (AVX2 only) onnxruntime's
# uint8 x int8 kernels use VPMADDUBSW, whose 16-bit sums saturate with full-range 8-bit weights: the MNIST CNN's
# int8 package lost 2 of 180 test digits on an AVX2-only EPYC and none on an AVX-512 VNNI machine. A package is
# built once and served on whatever CPU the user has, so it is built to be right on both.
REDUCE_RANGE = True


@register_compressor("int8")
class Int8(Compressor):
    stage = "graph"

    def recipe(self, ctx: ExportContext) -> dict[str, Any]:
        return {"step": self.name, "config": self.cfg.quantize.model_dump(mode="json")}

    def make_graph(self, ctx: ExportContext, parent: Package, out: Path, reporter: Reporter) -> dict[str, Any]:
        import onnx
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

        qc = self.cfg.quantize
        _quiet()
        src = parent.path / "model.onnx"
        kernels = "VNNI" if cpu_has_vnni() else "AVX2 (VPMADDUBSW)"
        reporter.info(f"int8 ({ctx.task.int8_activations} activations): 7-bit weights, exact on AVX2 and VNNI CPUs "
                      f"alike; this CPU ({cpu_kind()}) runs it with {kernels} kernels")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if ctx.task.int8_activations == "dynamic":
                    quantize_dynamic(src, out, weight_type=QuantType.QInt8, per_channel=qc.per_channel,
                                     reduce_range=REDUCE_RANGE,
                                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
                    return {"mode": "dynamic", "weights": "int8", "per_channel": qc.per_channel,
                            "reduce_range": REDUCE_RANGE}
                rows = calibration_rows(ctx, qc.calibration_rows, ctx.run.config.seed)
                reader = _Reader(parent, ctx.raw(rows))
                with tempfile.TemporaryDirectory() as tmp:
                    pre = Path(tmp) / "pre.onnx"
                    try:  # fold batch-norms and constants first, as onnxruntime recommends for static int8
                        from onnxruntime.quantization.shape_inference import quant_pre_process

                        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
                    except Exception:  # pre-processing is an optimisation; quantize the graph as it is
                        pre = src
                    quantize_static(pre, out, reader, quant_format=QuantFormat.QDQ, per_channel=qc.per_channel,
                                    reduce_range=REDUCE_RANGE, activation_type=QuantType.QUInt8,
                                    weight_type=QuantType.QInt8)
                return {"mode": "static", "format": "QDQ", "activations": "uint8", "weights": "int8",
                        "per_channel": qc.per_channel, "reduce_range": REDUCE_RANGE, "calibration_rows": len(rows),
                        "calibration": "minmax"}
        except ConfigError:
            raise
        except Exception as err:  # onnxruntime's tools raise many types; all mean "this graph did not quantize"
            raise ExportError(f"int8 quantization of {parent.path} failed: {err}") from None


@register_compressor("fp16")
class FP16(Compressor):
    stage = "graph"

    def make_graph(self, ctx: ExportContext, parent: Package, out: Path, reporter: Reporter) -> dict[str, Any]:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        _quiet()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = convert_float_to_float16(onnx.load(str(parent.path / "model.onnx")), keep_io_types=True)
            onnx.save(model, str(out))
        except Exception as err:
            raise ExportError(f"fp16 conversion of {parent.path} failed: {err}") from None
        return {"weights": "float16", "io": "float32"}
