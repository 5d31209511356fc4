"""text-classification: tokenizing, truncation, batching by length, layer options, and a tiny real fine-tune
on a few dozen SpamAssassin emails through the public API (save, reload, identical logits)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import shipml
from shipml.config import TaskConfig, TransformerConfig
from shipml.data import load_dataset
from shipml.data.dataset import CleaningLog, Dataset
from shipml.errors import ConfigError
from shipml.tasks import create_task
from shipml.tasks.text import default_backbone
from shipml.training import predict_outputs


def _texts(n: int = 40) -> Dataset:
    rng = np.random.default_rng(1)
    texts = [" ".join(["word"] * int(k)) for k in rng.integers(1, 200, size=n)]
    labels = ["long" if len(t) > 400 else "short" for t in texts]
    split = np.array(["train"] * (n - 10) + ["val"] * 5 + ["test"] * 5)
    frame = pd.DataFrame({"text": texts, "label": labels})
    return Dataset("text", frame, "label", ["text"], [], split, "fp-texts", CleaningLog(), classes=["long", "short"])


def _task(**model: object) -> shipml.tasks.Task:
    return create_task("text-classification", model=TransformerConfig(**({"max_length": 32} | model)))


def test_truncation_strategies_keep_the_right_tokens() -> None:
    data = _texts()
    ids = {}
    for how in ("head", "tail", "head+tail"):
        task = _task(truncation=how).fit(data)
        sample = pd.DataFrame({"text": [" ".join(str(i) for i in range(100))]})
        enc = task.encode(sample, None)
        assert int(enc["lengths"][0]) == 32
        ids[how] = task.tokenizer.decode(enc["input_ids"][0, :32].tolist())
    assert ids["head"].startswith("0 1 2") and not ids["head"].endswith("99")
    assert ids["tail"].endswith("98 99") and not ids["tail"].startswith("0 ")
    assert ids["head+tail"].startswith("0 1") and ids["head+tail"].endswith("98 99")


def test_dynamic_padding_and_length_grouping() -> None:
    data = _texts(200)
    task = _task(max_length=128).fit(data)
    inputs = task.encode_dataset(data)
    lengths = inputs["lengths"].numpy()
    order = np.random.default_rng(0).permutation(200)
    arranged = task.arrange_epoch(inputs, order, 8, torch.Generator().manual_seed(0))
    assert sorted(arranged.tolist()) == list(range(200))  # a permutation: nothing lost or repeated
    spread = [np.ptp(lengths[arranged[i : i + 8]]) for i in range(0, 200, 8)]
    random_spread = [np.ptp(lengths[order[i : i + 8]]) for i in range(0, 200, 8)]
    assert np.mean(spread) < 0.5 * np.mean(random_spread)  # grouped batches pad far less
    batch = task.make_batch(inputs, torch.as_tensor(arranged[:8]), train=True, gen=torch.Generator())
    assert batch["input_ids"].shape[1] == lengths[arranged[:8]].max()  # padded to the batch's longest text
    assert batch["attention_mask"].sum(1).tolist() == lengths[arranged[:8]].tolist()


def test_freeze_layers_and_layer_lr_decay() -> None:
    task = _task(freeze_layers=2, layer_lr_decay=0.5).fit(_texts())
    model = task.build_model()
    layers = model.encoder.encoder.layer
    assert not any(p.requires_grad for p in model.encoder.embeddings.parameters())
    assert not any(p.requires_grad for p in layers[1].parameters())
    assert all(p.requires_grad for p in layers[2].parameters())
    groups = task.param_groups(model)
    assert groups[0] == (list(model.head.parameters()), 1.0)
    assert groups[1][1] == 0.5 and groups[-1][1] == 0.5 ** (len(layers) + 1)
    assert sum(len(ps) for ps, _ in groups) == len(list(model.parameters()))
    with pytest.raises(ConfigError, match="freeze_layers"):
        _task(freeze_layers=99).fit(_texts()).build_model()


def test_backbone_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a folder"):
        _task(backbone=str(tmp_path / "missing")).fit(_texts())
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 1000}))
    with pytest.raises(ConfigError, match=r"tokenizer\.json"):
        _task(backbone=str(tmp_path)).fit(_texts())
    shutil.copy(default_backbone() / "tokenizer.json", tmp_path / "tokenizer.json")
    with pytest.raises(ConfigError, match=r"no \*\.safetensors weights"):
        _task(backbone=str(tmp_path)).fit(_texts())
    (tmp_path / "model.safetensors").write_bytes(b"not really weights")
    with pytest.raises(ConfigError, match="not from the same model"):  # 30k-token tokenizer, 1000-token encoder
        _task(backbone=str(tmp_path)).fit(_texts())
    (tmp_path / "config.json").write_text((default_backbone() / "config.json").read_text())
    task = _task(backbone=str(tmp_path)).fit(_texts())
    with pytest.raises(ConfigError, match="cannot load the encoder weights"):
        task.build_model()


def test_balanced_class_weights_reach_the_loss() -> None:
    data = _texts()
    task = create_task("text-classification", model=TransformerConfig(max_length=32),
                       task=TaskConfig(name="text-classification", class_weights="balanced")).fit(data)
    w = task.prep["class_weights"]
    counts = np.bincount(data.y("train"), minlength=2)
    assert w[int(np.argmin(counts))] > w[int(np.argmax(counts))]
    logits, y = torch.zeros(4, 2), torch.tensor([0, 0, 1, 1])
    assert torch.isclose(task.loss(logits, y), torch.tensor(np.log(2.0), dtype=torch.float32))


@pytest.mark.slow
def test_tiny_fine_tune_on_real_emails_save_and_reload(email_dir: Path, tmp_path: Path) -> None:
    email_folder = email_dir  # 24 real ham + 24 real spam messages (tests/conftest.py)
    cfg = {
        "name": "spam", "output_dir": str(tmp_path / "runs"),
        "data": {"path": str(email_folder), "split": {"train": 0.6, "val": 0.2, "test": 0.2}},
        "task": {"name": "text-classification", "threshold": {"strategy": "max_f1", "positive": "spam"}},
        "model": {"arch": "transformer", "max_length": 64},
        "train": {"epochs": 4, "batch_size": 8, "lr": 1e-4, "checkpoint_every": 5},
        "evaluate": {"bootstrap": 50},
    }
    run = shipml.train(cfg, quiet=True)
    losses = [r["loss"] for r in map(json.loads, (run.path / "metrics.jsonl").read_text().splitlines())
              if r["kind"] == "train"]
    assert np.mean(losses[-2:]) < losses[0], f"training loss does not fall: {losses}"
    assert (run.path / "model" / "tokenizer.json").is_file()  # the model is saved with its tokenizer
    decision = json.loads((run.path / "model" / "task.json").read_text())["preprocessing"]["decision"]
    assert decision["strategy"] == "max_f1" and 0 <= decision["threshold"] <= 1
    metrics = run.metrics
    assert metrics["decision"]["positive"] == "spam"
    assert metrics["baseline"]["name"].startswith("TF-IDF")

    frame = run.predict(email_folder / "spam")  # raw emails, parsed as in training
    assert len(frame) == 24 and set(frame["prediction"]) <= {"ham", "spam"}
    assert {"source", "confidence", "proba:ham", "proba:spam"} <= set(frame.columns)
    np.testing.assert_allclose(frame[["proba:ham", "proba:spam"]].sum(axis=1), 1.0, rtol=1e-5)

    # a fresh process-like reload from disk (the backbone folder is not needed) gives identical logits
    moved = tmp_path / "moved"
    shutil.copytree(run.path, moved)
    again = shipml.Run(moved)
    data = load_dataset(again.config.data, seed=0, task_kind="classification", kind="text")
    idx = data.indices("test")
    a = predict_outputs(run.model, run.task, run.task.encode_dataset(data), idx)
    b = predict_outputs(again.model, again.task, again.task.encode_dataset(data), idx)
    assert torch.equal(a, b)
    assert default_backbone().is_dir()
