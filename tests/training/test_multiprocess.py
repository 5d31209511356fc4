"""Training on several real processes (gloo, `shipml train --nproc 2`): a run interrupted under one process
resumes under two (and back), lands where the uninterrupted one-process run lands, and rank 0 alone writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from clirun import in_process
from safetensors import safe_open
from safetensors.torch import load_file

from shipml.training.distributed import share

# No dropout and no batch-norm: the only difference between one process and two is then the order in which
# float32 gradient parts are summed (DDP averages two half-batch gradients, one process one full batch), so
# weights agree to ~1e-5 and at most a row sitting on the decision boundary can flip (tolerance: one test row).
CONFIG = """
name: cancer
seed: 3
data: {path: "sklearn:breast_cancer"}
task: {name: tabular-classification}
model: {arch: mlp, hidden: [32, 16], dropout: 0.0}
train: {epochs: 9, batch_size: 16, lr: 0.002, checkpoint_every: null, keep_checkpoints: 50, precision: fp32, threads: 1}
evaluate: {bootstrap: 0, baseline: none}
"""
TRAIN_ROWS, BATCH = 455, 16  # breast cancer, 80/10/10: 29 steps an epoch (the last batch: 7 rows)


def _shipml(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONHASHSEED": "0"}
    return subprocess.run([sys.executable, "-m", "shipml", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _interrupt(run: Path, keep_step: int) -> None:
    """Leave `run` as a kill right after checkpoint `keep_step` leaves it: later checkpoints and everything
    written after training gone, status `training`; metrics.jsonl keeps its later lines (resume cuts them)."""
    for ckpt in (run / "checkpoints").glob("ckpt-*.safetensors"):
        if int(ckpt.stem.split("-")[1]) > keep_step:
            ckpt.unlink()
    for name in ("model/model.safetensors", "metrics.json", "predictions.parquet", "report.html"):
        (run / name).unlink(missing_ok=True)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(info | {"status": "training"}))


def _log(run: Path) -> list[str]:
    return (run / "metrics.jsonl").read_text().splitlines()


def _rng_ranks(ckpt: Path) -> set[str]:
    with safe_open(str(ckpt), framework="pt") as f:
        return {k for k in f.keys() if k.startswith("rng/torch")}  # noqa: SIM118 (safe_open has no __iter__)


def _check_against(run: Path, reference: Path) -> None:
    """Same test accuracy (within one row), nearly the same weights, one writer's log and report."""
    ours, ref = json.loads((run / "metrics.json").read_text()), json.loads((reference / "metrics.json").read_text())
    n_test = json.loads((run / "data.json").read_text())["splits"]["test"]
    acc, ref_acc = ours["test"]["accuracy"]["value"], ref["test"]["accuracy"]["value"]
    assert abs(acc - ref_acc) <= 1 / n_test + 1e-9, (acc, ref_acc)
    w = load_file(str(run / "model" / "model.safetensors"))
    ref_w = load_file(str(reference / "model" / "model.safetensors"))
    assert w.keys() == ref_w.keys()
    for k, v in ref_w.items():
        torch.testing.assert_close(w[k], v, atol=1e-4, rtol=1e-4, msg=f"{k} drifted from the one-process run")
    # one writer: no line twice, the same records at the same steps as the uninterrupted run (values aside)
    lines = _log(run)
    recs = [json.loads(line) for line in lines]
    keys = [(r["kind"], r["step"]) for r in recs]
    assert len(set(keys)) == len(keys), "metrics.jsonl has a step twice: more than one process wrote it"
    ref_recs = [json.loads(line) for line in _log(reference)]
    assert [(r["kind"], r["step"]) for r in recs] == [(r["kind"], r["step"]) for r in ref_recs]
    assert (run / "report.html").is_file() and json.loads((run / "run.json").read_text())["status"] == "finished"
    assert not [p for p in run.rglob("*") if p.name.startswith(".tmp-")], "a writer left temp files"


@pytest.mark.slow
def test_resume_a_one_process_run_on_two_processes_and_back(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(CONFIG)
    _ok(_shipml("train", "c.yaml", "--quiet", cwd=tmp_path))  # uninterrupted, one process
    (reference,) = (tmp_path / "runs").glob("cancer-*")
    steps_per_epoch = -(-TRAIN_ROWS // BATCH)
    assert sorted(int(p.stem[5:]) for p in (reference / "checkpoints").glob("ckpt-*")) == [
        steps_per_epoch * e for e in range(1, 10)]

    # interrupted after epoch 3 of one-process training; resumed on two processes
    run = tmp_path / "resumed"
    shutil.copytree(reference, run)
    _interrupt(run, keep_step=3 * steps_per_epoch)
    out = _ok(_shipml("train", "--resume", str(run), "--nproc", "2", "--quiet", cwd=tmp_path))
    assert out.splitlines() == [str(run)], "only rank 0 prints (the run directory, under --quiet)"
    _check_against(run, reference)
    ckpts = sorted((run / "checkpoints").glob("ckpt-*.safetensors"))
    assert len(ckpts) == 9
    for ckpt in ckpts:  # the 2-process checkpoints: one file each, written by rank 0 with both ranks' RNGs
        expected = {"rng/torch"} if int(ckpt.stem[5:]) <= 3 * steps_per_epoch else {"rng/torch", "rng/torch@1"}
        assert _rng_ranks(ckpt) == expected, ckpt.name

    # and back: the same run interrupted after epoch 6 (a two-process checkpoint), resumed on one process
    _interrupt(run, keep_step=6 * steps_per_epoch)
    _ok(_shipml("train", "--resume", str(run), "--quiet", cwd=tmp_path))
    _check_against(run, reference)


@pytest.mark.slow
def test_two_processes_take_the_one_process_step(tmp_path: Path) -> None:
    """Batch 151 of 455 rows: 3 full batches and one of 2 rows (rank 0 alone computes it, rank 1 with weight 0),
    accumulated in pairs, with gradient clipping and an L1 term: the step is the one-process step."""
    (tmp_path / "c.yaml").write_text(CONFIG.replace("epochs: 9, batch_size: 16,",
                                                    "epochs: 3, batch_size: 151, grad_accum: 2, grad_clip: 0.5, "
                                                    "l1: 0.0001,"))
    runs = []
    for extra in ([], ["--nproc", "2"]):
        runs.append(Path(_ok(_shipml("train", "c.yaml", "--quiet", *extra, cwd=tmp_path)).strip()))
    one, two = (load_file(str(tmp_path / r / "model" / "model.safetensors")) for r in runs)
    for k, v in one.items():
        torch.testing.assert_close(two[k], v, atol=1e-5, rtol=1e-5)  # measured: 3e-8 after 9 such epochs
    losses = [[json.loads(line)["loss"] for line in _log(tmp_path / r)] for r in runs]
    assert np.allclose(losses[0], losses[1], rtol=1e-5), "the logged loss is the global batch's, on any count"


def test_share_cuts_every_global_batch_into_rank_slices() -> None:
    rows = np.arange(7)
    parts = [share(rows, r, 2) for r in range(2)]
    assert np.concatenate([p for p, _ in parts]).tolist() == rows.tolist()
    assert [w for _, w in parts] == [3 * 2 / 7, 4 * 2 / 7]  # weighted mean losses average to the global mean
    # too few rows for 2 each (batch-norm): rank 0 computes all, the others with weight 0
    assert [(p.tolist(), w) for p, w in (share(np.arange(3), r, 2) for r in range(2))] == [([0, 1, 2], 2.0),
                                                                                          ([0, 1, 2], 0.0)]
    assert share(rows, 0, 1)[1] == 1.0


@pytest.mark.parametrize(("args", "message"), [
    (["--nproc", "0"], "--nproc 0: the number of training processes must be at least 1"),
    (["--nproc", "4096"], "--nproc 4096: this machine gives this process"),
    (["--nproc", "2", "--backend", "nccl"], "--backend nccl needs CUDA GPUs"),
    (["--nproc", "2", "--backend", "mpi"], "backend 'mpi' is not known"),
])
def test_bad_nproc_or_backend_is_one_clear_error(tmp_path: Path, args: list[str], message: str,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    if "nccl" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA GPUs")
    (tmp_path / "c.yaml").write_text(CONFIG)
    proc = in_process("train", "c.yaml", *args, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert proc.returncode == 2
    assert proc.stderr.count("error:") == 1 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "runs").exists()
