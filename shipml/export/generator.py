"""An image-generation run -> a package whose network is the generator: noise + class -> uint8 images.

The traced module is the task's `export_module` (the judged generator, i.e. the moving average, with the
rounding to uint8 inside the graph). Parity: the package is run through `shipml.runtime` on fixed noise for
every class and compared with the PyTorch generator; grey levels may differ by one where a pixel lands on a
rounding boundary (float summation order), never by more, and only rarely.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from shipml._console import Reporter
from shipml.core.files import temp_name
from shipml.errors import ExportError
from shipml.export.onnx import OPSET
from shipml.export.package import ExportContext, _versions
from shipml.runtime import FORMAT, Package, atomic_dir, write_manifest
from shipml.runtime.generate import noise

__all__ = ["PARITY_LEVELS", "PARITY_SHARE", "export_generator"]

PARITY_LEVELS = 1  # most grey levels a pixel may differ by between ONNX and PyTorch
PARITY_SHARE = 0.999  # least share of pixels that must be identical
PARITY_ROWS = 8  # images per class in the parity check


def _trace(module: torch.nn.Module, z_dim: int, path: Path) -> None:
    example = (torch.zeros(2, z_dim), torch.zeros(2, dtype=torch.int64))
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example, str(path), input_names=["noise", "class"], output_names=["images"],
                              dynamic_axes={"noise": {0: "batch"}, "class": {0: "batch"}, "images": {0: "batch"}},
                              opset_version=OPSET, dynamo=False, do_constant_folding=True)
    except Exception as err:  # the exporter raises many types; all mean "this model cannot be exported"
        raise ExportError(f"cannot export the generator to ONNX: {err}") from None


def export_generator(ctx: ExportContext, dest: Path, reporter: Reporter) -> Path:
    """Write the generator package at `dest` (atomically, only if it passes parity); returns `dest`."""
    run, task = ctx.run, ctx.task
    module = task.export_module(run.model).eval()
    spec = task.spec()
    gen = spec["generation"]
    h, w = gen["size"]
    n_classes = max(1, len(task.classes or []))
    feeds = {"noise": noise(run.config.seed, PARITY_ROWS * n_classes, gen["z_dim"]),
             "class": np.arange(PARITY_ROWS * n_classes, dtype=np.int64) % n_classes}
    with torch.no_grad():
        reference = module(torch.from_numpy(feeds["noise"]), torch.from_numpy(feeds["class"])).numpy()
    with tempfile.TemporaryDirectory(prefix=temp_name("export"), dir=run.path) as tmp:
        onnx_file = Path(tmp) / "model.onnx"
        _trace(module, gen["z_dim"], onnx_file)
        import onnx

        graph_inputs = [i.name for i in onnx.load(str(onnx_file), load_external_data=False).graph.input]
        inputs = [{"name": "noise", "dtype": "float32", "shape": ["batch", gen["z_dim"]]},
                  {"name": "class", "dtype": "int64", "shape": ["batch"]}]
        signature = {"format": FORMAT, **spec, "inputs": [i for i in inputs if i["name"] in graph_inputs],
                     "outputs": [{"name": "images", "dtype": "uint8", "shape": ["batch", h, w, gen["channels"]]}],
                     "variant": {"name": "fp32", "method": "export", "params": {}}}
        cfg = run.config
        provenance = {"run": run.id, "run_path": str(run.path.resolve()), "data_fingerprint": ctx.data.fingerprint,
                      "seed": cfg.seed, "config": yaml.safe_load((run.path / "config.yaml").read_text()),
                      "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": _versions(),
                      "parent": None}
        with atomic_dir(dest) as out:
            shutil.copyfile(onnx_file, out / "model.onnx")
            (out / "signature.json").write_text(json.dumps(signature, indent=2) + "\n")
            (out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
            (out / "metrics.json").write_text("{}\n")
            write_manifest(out)
            pkg = Package.open(out)
            names = [i["name"] for i in signature["inputs"]]
            ours = np.asarray(pkg.session().run(["images"], {k: v for k, v in feeds.items() if k in names})[0])
            if ours.dtype != np.uint8 or ours.shape != reference.shape:
                raise ExportError(f"the exported generator returns {ours.dtype} {ours.shape}, PyTorch uint8 "
                                  f"{reference.shape}; nothing was written. Report this with the run's config")
            diff = np.abs(ours.astype(np.int16) - reference.astype(np.int16))
            same = float((diff == 0).mean())
            parity = {"max_abs_diff": int(diff.max()), "identical_pixels": same, "n": len(ours),
                      "tolerance": {"max_levels": PARITY_LEVELS, "identical_share": PARITY_SHARE},
                      "reference": "the run's PyTorch generator (fp32, moving average)"}
            if diff.max() > PARITY_LEVELS or same < PARITY_SHARE:
                raise ExportError(f"parity check failed for {dest.name}: pixels differ by up to {int(diff.max())} "
                                  f"grey levels, {same:.4%} identical (allowed: {PARITY_LEVELS}, {PARITY_SHARE:.1%}) "
                                  "on fixed noise; nothing was written. Report this with the run's config")
            metrics: dict[str, Any] = {"parity": parity, "split": "generated"}
            if (run.path / "metrics.json").exists():
                metrics |= {k: v for k, v in run.metrics.items() if k in ("test", "generation", "judge")}
            (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
            write_manifest(out)
            Package.open(out)  # the manifest verifies
    reporter.info(f"package [bold]{dest}[/bold]: generator parity max |diff| {parity['max_abs_diff']} grey levels, "
                  f"{same:.2%} identical pixels on {len(ours)} images")
    return dest
