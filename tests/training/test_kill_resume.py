"""`kill -9` a real training process, resume it, and get the weights of an uninterrupted run, bit for bit."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import torch
from procs import finish, run_dir, shipml
from safetensors.torch import load_file

CONFIG = """
name: cancer
seed: 7
data: {path: "sklearn:breast_cancer"}
task: {name: tabular-classification}
model: {arch: mlp, hidden: [64, 32], dropout: 0.2}
train: {epochs: 30, batch_size: 16, lr: 0.001, checkpoint_every: 3, keep_checkpoints: 2, precision: fp32, threads: 1}
evaluate: {bootstrap: 0, baseline: none}
"""


@pytest.mark.slow
def test_kill_minus_nine_then_resume_is_bit_identical(tmp_path: Path) -> None:
    ref_root = tmp_path / "reference"
    ref_root.mkdir()
    (ref_root / "c.yaml").write_text(CONFIG)
    finish(shipml("train", "c.yaml", "--quiet", cwd=ref_root), timeout=300)
    reference = load_file(str(run_dir(ref_root, "cancer") / "model" / "model.safetensors"))

    # kill at different moments: right after the first checkpoint appears, and later on
    for n_checkpoints_seen, extra_delay in ((1, 0.0), (2, 0.15)):
        root = tmp_path / f"killed-{n_checkpoints_seen}"
        root.mkdir()
        (root / "c.yaml").write_text(CONFIG)
        proc = shipml("train", "c.yaml", "--quiet", cwd=root)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            ckpts = list((root / "runs").glob("cancer-*/checkpoints/ckpt-*.safetensors"))
            if len(ckpts) >= n_checkpoints_seen:
                break
            time.sleep(0.005)
        time.sleep(extra_delay)
        assert proc.poll() is None, "training finished before it could be killed; make the run longer"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        run = run_dir(root, "cancer")
        assert not (run / "model" / "model.safetensors").exists()
        finish(shipml("train", "--resume", str(run), "--quiet", cwd=root))
        resumed = load_file(str(run / "model" / "model.safetensors"))
        assert resumed.keys() == reference.keys()
        for k, v in reference.items():
            assert torch.equal(resumed[k], v), f"{k} differs after kill -9 #{n_checkpoints_seen} and resume"


def test_a_run_being_trained_cannot_be_resumed_twice(tmp_path: Path) -> None:
    import fcntl

    import shipml as api
    from shipml.errors import TrainError
    from shipml.run import Run

    (tmp_path / "c.yaml").write_text(CONFIG.replace("epochs: 30", "epochs: 1"))
    run = api.train(tmp_path / "c.yaml", overrides=[f"output_dir={tmp_path / 'runs'}"], quiet=True).path
    (run / "run.json").write_text((run / "run.json").read_text().replace('"finished"', '"training"'))
    with open(run / ".lock", "a+") as f:  # another process holds the run
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        with pytest.raises(TrainError, match="another process"):
            Run.resume(run, quiet=True)
    assert Run.resume(run, quiet=True).info["status"] == "finished"  # the lock is gone with its holder
