"""Compression: pruning that really shrinks, distillation that really uses the teacher, targets, reuse, and bad
input. Every task x compressor pair is built in test_compress_matrix.py."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import shipml
from shipml.compress import compress_run, parse_methods, parse_target, pick
from shipml.compress.distill import distillation_task, kl_to_teacher, teacher_outputs
from shipml.compress.prune import keep_count, prune_model, taylor_scores
from shipml.config import DistillConfig
from shipml.errors import ConfigError, ExportError, ShipmlError
from shipml.export import load_context
from shipml.export.package import example_batch
from shipml.runtime import Package
from shipml.tasks.bert import student_layers
from shipml.training import fit, predict_outputs


def _copy(run: Path, tmp: Path) -> Path:
    dest = tmp / run.name
    shutil.copytree(run, dest)
    return dest


@pytest.mark.parametrize("name", ["table_run", "text_run"])
def test_int8_on_tables_and_text(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> None:
    run = _copy(request.getfixturevalue(name), tmp_path)
    compress_run(run, methods="int8", measure=False, quiet=True)
    pkg = Package.open(run / "variants" / "int8")
    mode = pkg.signature["variant"]["params"]["mode"]
    assert mode == ("dynamic" if name == "text_run" else "static")
    n = pkg.metrics["parity"]["n"]
    # borderline rows may flip: measured 2 of 57 on cancer (accuracy unchanged), 0 on the emails
    assert pkg.metrics["parity"]["agreement"] >= 1 - 2 / n
    import onnx

    if name == "text_run":  # int8 weights and embeddings; the small position table stays float
        fp32 = (run / "package" / "model.onnx").stat().st_size
        assert (run / "variants" / "int8" / "model.onnx").stat().st_size < 0.3 * fp32
    else:
        graph = onnx.load(str(run / "variants" / "int8" / "model.onnx")).graph
        weights = [t for t in graph.initializer if len(t.dims) == 2]
        assert weights and all(t.data_type == onnx.TensorProto.INT8 for t in weights), [t.name for t in weights]


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["image_run", "table_run", "text_run"])
def test_pruning_removes_parameters_and_keeps_outputs_sane(request: pytest.FixtureRequest, name: str) -> None:
    run = shipml.Run(request.getfixturevalue(name))
    ctx = load_context(run)
    model = copy.deepcopy(run.model)
    before = _shapes(model)
    groups = run.task.prunable_groups(model, example_batch(ctx))
    scores = taylor_scores(model, run.task, ctx, groups, batches=2, batch_size=8, seed=0)
    kept = prune_model(groups, scores, 0.3)
    after = _shapes(model)
    def count(shapes: dict[str, tuple[int, ...]]) -> int:  # word/position embeddings are not pruned
        return sum(int(np.prod(s)) for k, s in shapes.items() if "embeddings." not in k)

    assert count(after) < 0.8 * count(before)
    assert all(k < n for k, n in kept.values())
    if name == "text_run":
        layer = model.encoder.encoder.layer[0]
        assert layer.attention.self.query.weight.shape == (8 * 32, 384)  # 12 heads of 32 -> 8
        assert layer.attention.self.num_attention_heads == 8
        assert layer.intermediate.dense.weight.shape == (1072, 384)  # 1536 * 0.7, to a multiple of 8
        assert layer.output.dense.weight.shape == (384, 1072)
    out = predict_outputs(model, run.task, run.task.encode_dataset(ctx.data), ctx.test_idx)
    ref = predict_outputs(run.model, run.task, run.task.encode_dataset(ctx.data), ctx.test_idx)
    assert torch.isfinite(out).all() and out.shape == ref.shape


def test_taylor_importance_beats_its_inverse(table_run: Path) -> None:
    """Removing the units scored least important hurts the loss less than removing the most important."""
    run = shipml.Run(table_run)
    ctx = load_context(run)
    task = run.task
    inputs, targets = task.encode_dataset(ctx.data), task.encode_targets(ctx.data.y())
    idx = ctx.data.indices("val")

    def loss_after(invert: bool) -> float:
        model = copy.deepcopy(run.model)
        groups = task.prunable_groups(model, example_batch(ctx))
        scores = taylor_scores(model, task, ctx, groups, batches=8, batch_size=32, seed=0)
        prune_model(groups, [-s if invert else s for s in scores], 0.5)
        return float(task.loss(predict_outputs(model, task, inputs, idx), targets[torch.as_tensor(idx)]))

    assert loss_after(invert=False) < loss_after(invert=True)


def test_distillation_learns_from_the_teacher_alone(image_run: Path, tmp_path: Path) -> None:
    """alpha = 1: the true labels play no part, so a falling KL to the teacher can only come from the teacher."""
    run = shipml.Run(image_run)
    ctx = load_context(run)
    soft = teacher_outputs(run.model, run.task, ctx)
    student_task = copy.copy(run.task)
    student_task.model_cfg = run.task.model_cfg.model_copy(update={"width": 8})
    torch.manual_seed(0)
    student = student_task.build_model(pretrained=False)
    val = ctx.data.indices("val")
    kl_before = kl_to_teacher(student, student_task, ctx, soft, val)
    cfg = DistillConfig(alpha=1.0, temperature=2.0)
    train = run.config.train.model_copy(update={"epochs": 2, "checkpoint_every": None})
    trained = fit(distillation_task(student_task, soft, cfg), ctx.data, train, tmp_path / "w", seed=0,
                  model=student).model
    kl_after = kl_to_teacher(trained, student_task, ctx, soft, val)
    assert kl_after < 0.5 * kl_before, (kl_before, kl_after)


def test_transformer_student_starts_from_alternate_teacher_layers(text_run: Path, tmp_path: Path) -> None:
    assert student_layers(6, 3) == [1, 3, 5] and student_layers(12, 4) == [2, 5, 8, 11]
    with pytest.raises(ConfigError, match="layers"):
        student_layers(6, 7)
    run = _copy(text_run, tmp_path)
    compress_run(run, methods="distill", overrides=["compress.distill.epochs=1"], measure=False, quiet=True)
    pkg = Package.open(run / "variants" / "distill")
    assert pkg.signature["variant"]["params"]["from_teacher_layers"] == [1, 3, 5]
    assert pkg.metrics["parity"]["max_abs_diff"] <= 1e-4
    size = (run / "variants" / "distill" / "model.onnx").stat().st_size
    assert size < 0.8 * (run / "package" / "model.onnx").stat().st_size


def test_frontier_target_and_reuse(image_run: Path, tmp_path: Path) -> None:
    run = _copy(image_run, tmp_path)
    over = ["compress.latency_requests=20", "compress.distill.epochs=2"]
    result = compress_run(run, methods="int8,distill+int8", overrides=over, quiet=True)
    names = [r["name"] for r in result.rows]
    assert names == ["fp32", "int8", "distill", "distill+int8"]  # a chain's steps are measured too
    for r in result.rows:
        assert 0 < r["p50_ms"] <= r["p99_ms"] and r["rows_per_s"] > 0 and r["package_mb"] > 0 and r["peak_mb"] > 0
        assert 0 <= r["accuracy"] <= 1 and r["ci_low"] <= r["accuracy"] <= r["ci_high"]
    assert result.rows[0]["accuracy_drop"] == 0
    doc = json.loads((run / "frontier.json").read_text())
    assert doc["rows"] == result.rows and doc["selected"] is None
    shipml.Run(run).report()
    assert "Compression frontier" in (run / "report.html").read_text()

    stamp = (run / "variants" / "int8" / "model.onnx").stat().st_mtime_ns
    picked = compress_run(run, methods="int8,distill+int8", overrides=over, target="accuracy_drop<=1, p50_ms<=10000",
                          quiet=True)
    assert (run / "variants" / "int8" / "model.onnx").stat().st_mtime_ns == stamp  # reused, not rebuilt
    fastest = min(picked.rows, key=lambda r: (r["p50_ms"], -r["rows_per_s"]))
    assert picked.selected is not None and picked.selected["name"] == fastest["name"]
    none = compress_run(run, methods="int8", overrides=over, target="p50_ms<=0.000001", quiet=True)
    assert none.selected is None and "nothing met p50_ms<=1e-06" in (none.message or "")


def test_target_parsing_and_picking() -> None:
    names = {"p99_ms", "p50_ms", "accuracy", "accuracy_drop", "rows_per_s"}
    cs = parse_target("p99_ms<=15, accuracy_drop<=0.005", names)
    assert [str(c) for c in cs] == ["p99_ms<=15", "accuracy_drop<=0.005"]
    with pytest.raises(ConfigError, match="did you mean 'accuracy_drop'"):
        parse_target("acuracy_drop<=0.01", names)
    with pytest.raises(ConfigError, match="NAME OP NUMBER"):
        parse_target("p99_ms=<15", names)
    rows = [{"name": "fp32", "p50_ms": 10.0, "p99_ms": 20.0, "rows_per_s": 50.0, "accuracy_drop": 0.0},
            {"name": "int8", "p50_ms": 4.0, "p99_ms": 9.0, "rows_per_s": 120.0, "accuracy_drop": 0.004},
            {"name": "tiny", "p50_ms": 2.0, "p99_ms": 5.0, "rows_per_s": 300.0, "accuracy_drop": 0.02}]
    best, msg = pick(rows, cs)
    assert best is not None and best["name"] == "int8", msg
    best, msg = pick(rows, parse_target("p99_ms<=4", names))
    assert best is None and "nothing met p99_ms<=4" in msg and "tiny" in msg and "off by 1" in msg
    best, msg = pick(rows, parse_target("p99_ms<=6, accuracy_drop<=0.001", names))
    assert best is None and "no variant meets all constraints together" in msg


def test_bad_compression_requests_are_clear_errors(image_run: Path, tmp_path: Path) -> None:
    run = _copy(image_run, tmp_path)
    with pytest.raises(ConfigError, match=r"compress\.prune\.ratio"):
        compress_run(run, methods="prune", overrides=["compress.prune.ratio=1.2"], quiet=True)
    with pytest.raises(ConfigError, match=r"compress\.quantize\.calibration_rows"):
        compress_run(run, methods="int8", overrides=["compress.quantize.calibration_rows=0"], quiet=True)
    with pytest.raises(ConfigError, match=r"unknown compression method 'int4'.*distill, fp16, int8, prune"):
        parse_methods("int4")
    with pytest.raises(ConfigError, match="only come first"):
        parse_methods("int8+prune")
    with pytest.raises(ConfigError, match="did you mean 'p99_ms'"):
        compress_run(run, methods="int8", target="p99ms<=5", quiet=True)
    assert not (run / "variants").exists() and not (run / "package").exists()  # refused before any work


@pytest.mark.parametrize("name", ["image_run", "table_run", "text_run"])
def test_pruning_removes_exactly_the_units_it_drops(request: pytest.FixtureRequest, name: str) -> None:
    """Silence the units that will be dropped (zero the weights that read them): the network's outputs are
    then unchanged by pruning. A slicing mistake (wrong unit size, wrong axis, a batch-norm left unsliced)
    changes them."""
    run = shipml.Run(request.getfixturevalue(name))
    ctx = load_context(run)
    model = copy.deepcopy(run.model).float().eval()
    groups = run.task.prunable_groups(model, example_batch(ctx))
    rng = np.random.default_rng(0)
    scores = [rng.random(g.n) for g in groups]
    with torch.no_grad():
        for g, s in zip(groups, scores, strict=True):
            k = keep_count(g.n, 0.3, g.align)
            dropped = torch.as_tensor(np.argsort(-s, kind="stable")[k:])
            for m in g.members:
                if m.dim == 1:  # the consumer: its input columns for the dropped units become zero
                    idx = (dropped[:, None] * m.unit + torch.arange(m.unit)).reshape(-1)
                    getattr(m.module, m.attr).index_fill_(1, idx, 0.0)
    inputs, idx = run.task.encode_dataset(ctx.data), ctx.test_idx[:16]
    before = predict_outputs(model, run.task, inputs, idx)
    prune_model(groups, scores, 0.3)
    after = predict_outputs(model, run.task, inputs, idx)
    torch.testing.assert_close(after, before, atol=2e-5, rtol=1e-5)


def test_a_changed_recipe_rebuilds_a_variant(image_run: Path, tmp_path: Path) -> None:
    run = _copy(image_run, tmp_path)
    compress_run(run, methods="int8", measure=False, quiet=True)
    first = (run / "variants" / "int8" / "MANIFEST.json").read_bytes()
    compress_run(run, methods="int8", measure=False, quiet=True)
    assert (run / "variants" / "int8" / "MANIFEST.json").read_bytes() == first  # same recipe: reused
    mine = shipml.Run(run)
    before = mine.config
    compress_run(mine, methods="int8", overrides=["compress.quantize.per_channel=false"], measure=False, quiet=True)
    again = Package.open(run / "variants" / "int8")
    assert again.signature["variant"]["params"]["per_channel"] is False  # changed recipe: rebuilt
    assert again.signature["variant"]["recipe"] == {"step": "int8", "config": {"calibration_rows": 256,
                                                                              "per_channel": False}}
    assert mine.config is before and mine.config.compress.quantize.per_channel  # the caller's Run is untouched


def test_metrics_json_missing_falls_back_and_corrupt_is_an_error(image_run: Path, tmp_path: Path) -> None:
    """A target is checked against the run's metric names before any work: with no metrics.json yet, the
    headline metric is offered; a damaged one is reported, naming the file, instead of silently ignored."""
    run = _copy(image_run, tmp_path)
    (run / "metrics.json").unlink()
    with pytest.raises(ConfigError, match="did you mean 'accuracy_drop'"):
        compress_run(run, methods="int8", target="acuracy_drop<=0.01", quiet=True)
    (run / "metrics.json").write_text('{"test": {"accuracy": ')  # a write cut short
    with pytest.raises(ShipmlError, match=r"metrics\.json .*(damaged|not valid JSON)"):  # from Run.metrics
        compress_run(run, methods="int8", target="accuracy_drop<=0.01", quiet=True)
    (run / "metrics.json").write_text('{"test": ["not", "an", "object"]}')
    with pytest.raises(ExportError, match=r"metrics\.json is damaged"):
        compress_run(run, methods="int8", target="accuracy_drop<=0.01", quiet=True)
    assert not (run / "variants").exists() and not (run / "package").exists()


def test_distillation_loss_by_hand() -> None:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE, against a hand computation."""
    from shipml.tasks import create_task

    task = create_task("tabular-classification")
    task.classes, task.prep = ["a", "b", "c"], {"class_weights": None}
    teacher = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    student = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    y = np.array([0, 2])
    cfg = DistillConfig(temperature=2.0, alpha=0.7)
    distilled = distillation_task(task, teacher, cfg)
    targets = distilled.encode_targets(y)
    p_t = torch.softmax(teacher / 2, -1)
    kl = (p_t * (p_t.log() - torch.log_softmax(student / 2, -1))).sum(-1).mean()
    ce = torch.nn.functional.cross_entropy(student, torch.as_tensor(y))
    assert torch.isclose(distilled.loss(student, targets), 0.7 * 4 * kl + 0.3 * ce)

    reg = create_task("tabular-regression")
    reg.prep = {"target": {"mean": 0.0, "std": 1.0}}
    soft = torch.tensor([[1.0], [2.0]])
    d = distillation_task(reg, soft, DistillConfig(alpha=0.25))
    t = d.encode_targets(np.array([0.0, 4.0]))
    out = torch.tensor([[0.5], [3.0]])
    expected = 0.25 * ((out - soft) ** 2).mean() + 0.75 * ((out.squeeze(-1) - torch.tensor([0.0, 4.0])) ** 2).mean()
    assert torch.isclose(d.loss(out, t), expected)


def test_pick_without_a_metric_says_so() -> None:
    rows = [{"name": "fp32", "p50_ms": 1.0, "rows_per_s": 1.0}, {"name": "int8", "p50_ms": 0.5, "rows_per_s": 2.0,
                                                                  "roc_auc_drop": 0.1}]
    best, msg = pick(rows, parse_target("roc_auc_drop<=0.01, p50_ms<=0.6", {"roc_auc_drop", "p50_ms"}))
    assert best is None and "roc_auc_drop" in msg
