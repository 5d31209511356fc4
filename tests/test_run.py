"""The run directory's API: damaged files are clear errors, a finished run whose final weights were deleted
resumes to the same weights, scoring returns its decision instead of changing the task, predictions go through
the runtime's one input path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

import shipml
from shipml.errors import TrainError
from shipml.scorecard import score


def _copy(run: Path, tmp_path: Path) -> Path:
    dest = tmp_path / run.name
    shutil.copytree(run, dest)
    return dest


def test_run_json_records_the_task_kind(table_run: Path, regression_run: Path) -> None:
    assert json.loads((table_run / "run.json").read_text())["task_kind"] == "classification"
    assert json.loads((regression_run / "run.json").read_text())["task_kind"] == "regression"


@pytest.mark.parametrize("name,what", [("run.json", "status record"), ("data.json", "data summary"),
                                       ("metrics.json", "metrics"), ("model/task.json", "fitted task")])
def test_damaged_json_is_a_train_error_naming_the_file(table_run: Path, tmp_path: Path, name: str,
                                                       what: str) -> None:
    run_dir = _copy(table_run, tmp_path)
    (run_dir / name).write_text('{"status": "fini')  # torn write
    run = shipml.Run(run_dir)
    with pytest.raises(TrainError, match=rf"{name}.*not valid JSON.*{what}"):
        if name == "run.json":
            _ = run.info
        elif name == "data.json":
            run._recorded_fingerprint()
        elif name == "metrics.json":
            _ = run.metrics
        else:
            _ = run.task


def test_resume_rebuilds_a_deleted_model_bit_for_bit(table_run: Path, tmp_path: Path) -> None:
    """docs/runs.md promises `resume` works: a finished run whose model/model.safetensors is gone is rebuilt
    from its checkpoints (and best.safetensors) to the identical weights, and scored again."""
    run_dir = _copy(table_run, tmp_path)
    before = load_file(str(run_dir / "model" / "model.safetensors"))
    (run_dir / "model" / "model.safetensors").unlink()
    with pytest.raises(TrainError, match="resume"):
        _ = shipml.Run(run_dir).model
    run = shipml.Run.resume(run_dir, quiet=True)
    after = load_file(str(run_dir / "model" / "model.safetensors"))
    assert sorted(before) == sorted(after)
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)
    assert run.info["status"] == "finished" and (run_dir / "metrics.json").is_file()


def test_score_returns_the_decision_and_leaves_the_task_alone(text_run: Path, tmp_path: Path) -> None:
    run_dir = _copy(text_run, tmp_path)
    run = shipml.Run(run_dir)
    task = run.task
    saved = json.loads(json.dumps(task.prep))
    from shipml._console import Reporter
    from shipml.data import load_dataset

    data = load_dataset(run.config.data, seed=run.config.seed, task_kind=task.kind, kind=task.data_kind)
    task.prep["decision"] = {"strategy": "argmax", "positive": 1}  # a stale rule the tuning must replace
    before = json.loads(json.dumps(task.prep))
    metrics, decision = score(run_dir, run.config, task, run.model, data, tune=True, reporter=Reporter(quiet=True))
    assert task.prep == before  # not mutated
    assert decision is not None and decision["strategy"] == "max_f1" and decision == saved["decision"]
    assert metrics["decision"]["threshold"] == decision["threshold"]


def test_predict_reads_compressed_tables_for_text_runs(text_run: Path, tmp_path: Path) -> None:
    """Was: `shipml predict RUN x.csv.gz` on a text run read the table as one email."""
    run = shipml.Run(text_run)
    texts = ["Win a free prize now, click here", "Meeting notes for tomorrow", "", "<html><body></body></html>"]
    path = tmp_path / "x.csv.gz"
    pd.DataFrame({run.task.prep["text_column"]: texts}).to_csv(path, index=False)
    from_file = run.predict(path)
    from_list = run.predict(texts)
    assert len(from_file) == 4 and "source" not in from_file.columns
    pd.testing.assert_frame_equal(from_file, from_list)


def test_a_resumed_failed_run_loses_its_error(table_run: Path, tmp_path: Path) -> None:
    run_dir = _copy(table_run, tmp_path)
    run = shipml.Run(run_dir)
    run._write_status("failed", error="the training loss became nan at step 3", failed="2026-12-01T00:00:00")
    assert run.info["status"] == "failed" and "nan" in run.info["error"]
    run._write_status("finished")
    assert run.info["status"] == "finished" and "error" not in run.info and "failed" not in run.info
