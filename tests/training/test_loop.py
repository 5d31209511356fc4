"""The training loop: learns, early-stops, keeps the best weights, stops on a diverged loss, and resumes to the bit."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from shipml.config import TrainConfig
from shipml.data.dataset import Dataset
from shipml.errors import TrainError
from shipml.tasks import create_task
from shipml.training import fit, predict_outputs
from shipml.training.checkpoint import list_checkpoints, load_latest
from shipml.training.loop import LoopState

Cfg = Callable[..., TrainConfig]


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _records(run: Path, kind: str) -> list[dict[str, Any]]:
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in recs if r["kind"] == kind]


def _checkpoint_weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    path = run / "checkpoints" / f"ckpt-{step:09d}.safetensors"
    return {k[len("model/"):]: v for k, v in load_file(str(path)).items() if k.startswith("model/")}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert torch.equal(v, b[k]), f"{k} differs: {what}"


def test_fit_learns_and_logs(cancer: Dataset, train_cfg: Cfg, tmp_path: Path) -> None:
    task = create_task("tabular-classification").fit(cancer)
    res = fit(task, cancer, train_cfg(), tmp_path, seed=0)
    inputs = task.encode_dataset(cancer)
    proba = task.postprocess(predict_outputs(res.model, task, inputs, cancer.indices("test")))
    acc = (proba.argmax(1) == cancer.y("test")).mean()
    assert acc > 0.93
    val = _records(tmp_path, "val")
    assert [r["epoch"] for r in val] == [1.0, 2.0, 3.0, 4.0]  # one validation per epoch, at its end
    assert _records(tmp_path, "train")
    best = min(val, key=lambda r: r["loss"])  # validation loss is the default early-stopping metric
    assert res.best == {"step": best["step"], "epoch": best["epoch"], "metric": "loss", "value": best["loss"]}
    assert res.steps == 4 * 12  # 379 training rows in batches of 32
    assert list_checkpoints(tmp_path / "checkpoints")[0].name == f"ckpt-{res.steps:09d}.safetensors"  # newest


def test_best_checkpoint_is_the_final_model(cancer: Dataset, train_cfg: Cfg, tmp_path: Path) -> None:
    task = create_task("tabular-classification").fit(cancer)
    res = fit(task, cancer, train_cfg(epochs=6), tmp_path, seed=0)
    _assert_same(_weights(res.model), load_file(str(tmp_path / "best.safetensors")), "final vs best.safetensors")


def test_early_stopping(cancer: Dataset, train_cfg: Cfg, tmp_path: Path) -> None:
    """Training stops exactly `patience` validations after the best one and returns the best weights. With this
    recipe the validation loss goes down, up, further down (the best, at epoch 3), then up: patience restarts."""
    patience = 3
    task = create_task("tabular-classification").fit(cancer)
    cfg = train_cfg(epochs=50, lr=1e-2, early_stopping={"metric": "loss", "patience": patience})
    res = fit(task, cancer, cfg, tmp_path, seed=0)
    val = _records(tmp_path, "val")
    best_i = int(np.argmin([r["loss"] for r in val]))
    assert res.stopped_early
    assert len(val) == best_i + 1 + patience  # stopped at the patience-th validation without improvement
    assert best_i == 2 and val[1]["loss"] > val[0]["loss"], "the recipe no longer has the shape this test needs"
    assert res.steps == val[-1]["step"]
    assert res.best is not None and res.best["step"] == val[best_i]["step"]
    best_weights = _checkpoint_weights(tmp_path, res.best["step"])  # validation and checkpoint at each epoch end
    _assert_same(_weights(res.model), best_weights, "returned model vs the best step's checkpoint")
    last = _checkpoint_weights(tmp_path, res.steps)
    assert any(not torch.equal(v, last[k]) for k, v in best_weights.items()), "best and last should differ"


def test_resume_from_any_checkpoint_is_bit_identical(cancer: Dataset, train_cfg: Cfg, tmp_path: Path) -> None:
    """Train once; then, for several checkpoints, pretend the process died right after it and resume."""
    task = create_task("tabular-classification").fit(cancer)
    full = fit(task, cancer, train_cfg(), tmp_path / "full", seed=3)
    reference = _weights(full.model)
    ckpts = list_checkpoints(tmp_path / "full" / "checkpoints")
    assert len(ckpts) >= 5
    for keep in (ckpts[-1], ckpts[len(ckpts) // 2], ckpts[1]):
        run = tmp_path / f"from-{keep.name}"
        shutil.copytree(tmp_path / "full", run)
        for p in list_checkpoints(run / "checkpoints"):
            if p.name > keep.name:
                p.unlink()
        resumed = fit(task, cancer, train_cfg(), run, seed=3, resume=True)
        assert resumed.resumed_from == int(keep.name[len("ckpt-"):-len(".safetensors")])
        _assert_same(_weights(resumed.model), reference, f"after resuming from {keep.name}")
        assert _log(run) == _log(tmp_path / "full"), "the resumed metrics log differs"


def _log(run: Path) -> list[dict[str, object]]:
    """metrics.jsonl without the timing field (wall-clock speed differs between processes)."""
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "samples_per_s"} for r in recs]


def test_loop_state_reads_the_old_checkpoint_dict() -> None:
    """Checkpoints on disk hold state["loop"] as the plain dict the loop used before LoopState: same keys."""
    old = {"step": 36, "epoch": 3, "batch": 0, "best": {"step": 12, "epoch": 1.0, "metric": "loss", "value": 0.1},
           "bad_evals": 2, "stopped": True, "seconds": 1.5, "samples": 1137}
    state = LoopState.from_json(old)
    assert (state.step, state.epoch, state.best, state.bad_evals, state.stopped) == (36, 3, old["best"], 2, True)
    assert json.dumps(state.to_json()) == json.dumps(old)  # written back byte for byte
    assert LoopState.from_json({"step": 4, "epoch": 0, "batch": 4, "later_field": 1}) == LoopState(step=4, batch=4)


def test_one_process_can_train_with_both_precisions(cancer: Dataset, train_cfg: Cfg, tmp_path: Path) -> None:
    task = create_task("tabular-classification").fit(cancer)
    a = fit(task, cancer, train_cfg(epochs=1, precision="bf16"), tmp_path / "a", seed=0)
    b = fit(task, cancer, train_cfg(epochs=1, precision="fp32"), tmp_path / "b", seed=0)
    assert (a.precision, b.precision) == ("bf16", "fp32")
    wa, wb = _weights(a.model), _weights(b.model)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in wa.values())  # fp32 weights either way
    assert any(not torch.equal(v, wb[k]) for k, v in wa.items()), "bf16 autocast had no effect"


def test_no_val_split_means_last_weights(cancer: Dataset, resplit: Callable[[Dataset, np.ndarray], Dataset],
                                         train_cfg: Cfg, tmp_path: Path) -> None:
    data = resplit(cancer, np.where(cancer.split == "val", "train", cancer.split))
    task = create_task("tabular-classification").fit(data)
    res = fit(task, data, train_cfg(epochs=2), tmp_path, seed=0)
    assert res.best is None
    assert not (tmp_path / "best.safetensors").exists()
    assert not _records(tmp_path, "val")
    ckpt, _ = load_latest(tmp_path / "checkpoints")
    assert ckpt is not None and ckpt.state["loop"]["step"] == res.steps  # written after the last step
    _assert_same(_weights(res.model), ckpt.section("model"), "returned model vs the last step's checkpoint")


class _NanLossAt:
    """Wraps a task's loss: the `at`-th training loss (1-based; validation losses do not count) is nan."""

    def __init__(self, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], at: int) -> None:
        self.loss, self.at, self.calls = loss, at, 0

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        out = self.loss(outputs, targets)
        if outputs.requires_grad:
            self.calls += 1
            if self.calls == self.at:
                return out * float("nan")
        return out


def test_nan_loss_stops_with_a_clear_error(cancer: Dataset, train_cfg: Cfg, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Step 20 = epoch 2, batch 8 of 12: the error says so and what to try; no weights from step 20 are kept."""
    task = create_task("tabular-classification").fit(cancer)
    monkeypatch.setattr(task, "loss", _NanLossAt(task.loss, at=20))
    with pytest.raises(TrainError, match=r"loss became nan at step 20 \(epoch 2 of 4, batch 8 of 12\)") as err:
        fit(task, cancer, train_cfg(checkpoint_every=None), tmp_path, seed=0)
    assert "lower train.lr" in str(err.value) and "check the data" in str(err.value)
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["ckpt-000000012.safetensors"]
    assert max(r["step"] for r in _records(tmp_path, "train")) == 19  # logged up to the last good step


def test_exploding_loss_stops_training(cancer: Dataset, train_cfg: Cfg, tmp_path: Path) -> None:
    """A learning rate far too high: weights blow up within a few steps and the loss turns inf or nan."""
    task = create_task("tabular-classification").fit(cancer)
    with pytest.raises(TrainError, match=r"loss became (nan|inf) at step \d+ .*lower train.lr \(now 1e\+10\)"):
        fit(task, cancer, train_cfg(optimizer="sgd", lr=1e10), tmp_path, seed=0)


def test_a_diverged_run_is_not_marked_trained(tmp_path: Path) -> None:
    """Run writes "trained" only after fit returns: a diverged fit marks the run "failed" with the error, no model."""
    from shipml.run import train

    cfg = {"name": "diverges", "seed": 0, "data": {"path": "sklearn:breast_cancer"},
           "task": {"name": "tabular-classification"}, "model": {"arch": "mlp", "hidden": [16]},
           "train": {"epochs": 2, "optimizer": "sgd", "lr": 1e10, "precision": "fp32", "threads": 1},
           "evaluate": {"bootstrap": 0, "baseline": "none"}}
    with pytest.raises(TrainError, match=r"lower train\.lr"):
        train(cfg, run_dir=tmp_path / "run", quiet=True)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "failed" and "steps" not in info and "lower train.lr" in info["error"]
    assert not (tmp_path / "run" / "model" / "model.safetensors").exists()


def test_a_resume_takes_the_thread_count_its_checkpoint_was_trained_with(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's weights depend on its thread count, so a resume on a machine now busier (or idler) keeps the count
    its checkpoints were trained with; a count set by hand still wins."""
    from types import SimpleNamespace

    from shipml._console import Reporter
    from shipml.core import cpu
    from shipml.training.compute import set_threads

    monkeypatch.setattr(cpu, "usable_cores", lambda: 2)
    monkeypatch.setattr(cpu, "busy_elsewhere", lambda interval=0.1: 1.0)  # busier now than when it was trained
    before = torch.get_num_threads()
    try:
        ckpt = SimpleNamespace(state={"threads": 2})
        plan = set_threads(TrainConfig(), ckpt, Reporter(quiet=True))  # type: ignore[arg-type]
        assert plan.threads == 2 and torch.get_num_threads() == 2 and "checkpoint" in plan.reason
        assert set_threads(TrainConfig(), None, Reporter(quiet=True)).threads == 1  # a fresh run sees the load
        assert set_threads(TrainConfig(threads=1), ckpt, Reporter(quiet=True)).threads == 1  # type: ignore[arg-type]
    finally:
        torch.set_num_threads(before)


def test_checkpoints_record_the_thread_count(cancer: Dataset, train_cfg: Cfg, tmp_path: Path) -> None:
    task = create_task("tabular-classification").fit(cancer)
    fit(task, cancer, train_cfg(), tmp_path, seed=0)
    ckpt, _ = load_latest(tmp_path / "checkpoints")
    assert ckpt is not None and ckpt.state["threads"] == train_cfg().threads
