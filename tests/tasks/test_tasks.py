"""Generated from the task registry: every registered task fits, trains a few steps, predicts and
round-trips through its JSON assets. A new task needs a small data set in `_data_for` and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_diabetes, load_digits, load_wine

from shipml.config import TransformerConfig
from shipml.data.dataset import CleaningLog, Dataset
from shipml.errors import ConfigError
from shipml.tasks import create_task, get_task_class, list_tasks, register_task
from shipml.tasks.base import Task


def _split(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(np.array(["train", "val", "test"]), size=n, p=[0.7, 0.15, 0.15])


def _data_for(task: str) -> Dataset:
    if task in ("image-classification", "image-generation"):
        d = load_digits()
        images = (d.images * 255 / 16).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
        frame = pd.DataFrame({"source": [f"{i}.png" for i in range(len(images))], "label": d.target.astype(str)})
        return Dataset("images", frame, "label", [], [], _split(len(frame)), "x", CleaningLog(),
                       classes=sorted(frame["label"].unique()), images=images)
    if task == "tabular-classification":
        d = load_wine(as_frame=True)
        frame = d.frame.rename(columns={"target": "label"})
        frame["label"] = frame["label"].map(dict(enumerate(d.target_names)))
        frame["colour"] = np.where(frame["alcohol"] > 13, "deep", "pale")  # a categorical column
        frame.loc[::17, "magnesium"] = np.nan  # missing values are imputed from train statistics
        feats = [c for c in frame.columns if c != "label"]
        return Dataset("table", frame, "label", feats, ["colour"], _split(len(frame)), "x", CleaningLog(),
                       classes=sorted(frame["label"].unique()))
    if task == "tabular-regression":
        d = load_diabetes(as_frame=True)
        frame = d.frame
        feats = [c for c in frame.columns if c != "target"]
        return Dataset("table", frame, "target", feats, [], _split(len(frame)), "x", CleaningLog())
    if task == "text-classification":
        rng = np.random.default_rng(0)
        words = {"sport": "match goal team score league coach referee season striker keeper".split(),
                 "kitchen": "recipe oven flour butter simmer garlic sauce bake onion pepper".split()}
        common = "the a today we it was very and then again".split()
        rows = [(" ".join(rng.choice(words[c] + common, size=rng.integers(4, 30))), c)
                for c in ("sport", "kitchen") for _ in range(80)]
        frame = pd.DataFrame(rows, columns=["text", "label"])
        return Dataset("text", frame, "label", ["text"], [], _split(len(frame)), "text-fp", CleaningLog(),
                       classes=["kitchen", "sport"])
    raise AssertionError(f"no test data for task {task!r}: add it here")


def _adversarial_smoke(name: str, data: Dataset, tmp_path: Path) -> None:
    """A generation family: the discriminator learns to tell real images from a fixed generator's, the generator
    then learns to fool it, and the fitted task round-trips through JSON to the same samples."""
    task = create_task(name).fit(data)
    inputs, labels = task.encode_dataset(data), task.encode_targets(data.y())
    torch.manual_seed(0)
    model = task.build_model()
    d_opt = torch.optim.Adam(model.discriminator.parameters(), lr=2e-3)
    g_opt = torch.optim.Adam(model.generator.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    idx = torch.as_tensor(data.indices("train"))[:64]
    real, y = task.make_batch(inputs, idx, train=True, gen=gen)["pixels"], labels[idx]
    assert real.min() >= -1 and real.max() <= 1
    z = task.noise(len(idx), gen)
    d_losses, g_losses = [], []
    for _ in range(20):
        with torch.no_grad():
            fake = model.generator(z, y)
        loss = task.d_loss(model.discriminator(real, y), model.discriminator(fake, y))
        d_opt.zero_grad()
        loss.backward()
        d_opt.step()
        d_losses.append(loss.item())
    assert np.mean(d_losses[-3:]) < np.mean(d_losses[:3]), "the discriminator does not learn"
    model.discriminator.requires_grad_(False)
    for _ in range(20):
        loss = task.g_loss(model.discriminator(model.generator(z, y), y))
        g_opt.zero_grad()
        loss.backward()
        g_opt.step()
        g_losses.append(loss.item())
    assert np.mean(g_losses[-3:]) < np.mean(g_losses[:3]), "the generator does not learn"
    model.eval()
    with torch.no_grad():
        out = model(z, y)
    assert task.postprocess(out).dtype == np.uint8 and task.postprocess(out).shape == (len(idx), 8, 8, 1)
    again = get_task_class(name).from_assets(json.loads(json.dumps(task.assets())))
    model2 = again.build_model(pretrained=False)
    model2.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model2.eval()(z, y), out)


# A pretrained 6-layer encoder costs ~0.1 TFLOP per step of 64 texts: the text family takes fewer, shorter, smaller
# steps (its words are ~40 tokens), at a fine-tuning learning rate.
SMALL = {"text-classification": {"model": TransformerConfig(max_length=32)}}
STEPS = {"text-classification": (12, 16)}
LR = {"text-classification": 1e-4}


@pytest.mark.parametrize("name", list_tasks())
def test_task_trains_predicts_and_roundtrips(name: str, tmp_path: Path) -> None:
    data = _data_for(name)
    if get_task_class(name).trainer == "adversarial":
        return _adversarial_smoke(name, data, tmp_path)
    task = create_task(name, **SMALL.get(name, {})).fit(data)
    inputs = task.encode_dataset(data)
    targets = task.encode_targets(data.y())
    torch.manual_seed(0)
    model = task.build_model()
    opt = torch.optim.AdamW(model.parameters(), lr=LR.get(name, 3e-3))
    gen = torch.Generator().manual_seed(0)
    train_idx = torch.as_tensor(data.indices("train"))
    steps, batch = STEPS.get(name, (30, 64))
    probe = train_idx[:batch]  # one fixed batch, scored without dropout before and after training

    def probe_loss() -> float:
        model.eval()
        with torch.no_grad():
            value = task.loss(model(**task.make_batch(inputs, probe, train=False, gen=gen)), targets[probe]).item()
        model.train()
        return value

    before = probe_loss()
    for step in range(steps):
        idx = train_idx[torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(step))[:batch]]
        loss = task.loss(model(**task.make_batch(inputs, idx, train=True, gen=gen)), targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = probe_loss()
    assert after < 0.9 * before, f"loss does not fall: {before:.4f} -> {after:.4f}"

    model.eval()
    test_idx = torch.as_tensor(data.indices("test"))
    with torch.no_grad():
        out = model(**task.make_batch(inputs, test_idx, train=False, gen=gen))
    pred = task.postprocess(out)
    if task.kind == "classification":
        assert pred.shape == (len(test_idx), len(data.classes or []))
        np.testing.assert_allclose(pred.sum(axis=1), 1.0, rtol=1e-5)
    else:
        assert pred.shape == (len(test_idx),)
    metrics = task.quick_metrics(data.y("test"), pred)
    assert task.headline in metrics

    # everything learned is JSON, and a task rebuilt from it produces identical outputs
    assets = json.loads(json.dumps(task.assets()))
    for fname, content in task.files().items():
        (tmp_path / fname).write_bytes(content)
    again = get_task_class(name).from_assets(assets)
    again.load_files(tmp_path)
    model2 = again.build_model(pretrained=False)
    model2.load_state_dict(model.state_dict())
    model2.eval()
    with torch.no_grad():
        out2 = model2(**again.make_batch(again.encode_dataset(data), test_idx, train=False, gen=gen))
    torch.testing.assert_close(out, out2)


def test_preprocessing_learned_from_train_only() -> None:
    data = _data_for("tabular-regression")
    task = create_task("tabular-regression").fit(data)
    train = data.frame.iloc[data.indices("train")]
    assert task.prep["target"]["mean"] == pytest.approx(train["target"].mean())
    assert task.prep["numeric"][0]["mean"] == pytest.approx(train[data.features[0]].mean())


def test_unseen_category_maps_to_unknown() -> None:
    data = _data_for("tabular-classification")
    task = create_task("tabular-classification").fit(data)
    frame = data.frame.iloc[:3].copy()
    frame["colour"] = ["never-seen", None, "deep"]
    cat = task.encode(frame, None)["cat"]
    assert cat[0, 0] == 0 and cat[1, 0] == 0 and cat[2, 0] > 0


def test_augmentation_is_seeded_and_changes_images() -> None:
    data = _data_for("image-classification")
    task = create_task("image-classification").fit(data)
    inputs = task.encode_dataset(data)
    idx = torch.arange(16)
    a = task.make_batch(inputs, idx, train=True, gen=torch.Generator().manual_seed(1))["pixels"]
    b = task.make_batch(inputs, idx, train=True, gen=torch.Generator().manual_seed(1))["pixels"]
    c = task.make_batch(inputs, idx, train=False, gen=torch.Generator().manual_seed(1))["pixels"]
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_wrong_data_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="needs images data"):
        create_task("image-classification").fit(_data_for("tabular-regression"))


def test_registry_rejects_unknown_and_duplicate() -> None:
    with pytest.raises(ConfigError, match="image-classification"):
        create_task("text-clasification")
    with pytest.raises(ValueError, match="already registered"):
        register_task("tabular-regression")(type("Dup", (Task,), {}))


def test_model_arch_must_fit_task() -> None:
    from shipml.config import CNNConfig

    with pytest.raises(ConfigError, match="arch: mlp"):
        create_task("tabular-classification", model=CNNConfig())


# ---------------------------------------------------------------------------------------------- architecture hooks
HOOKS = ("export_module", "prunable_groups", "make_student")


@pytest.mark.parametrize("name", list_tasks())
def test_architecture_hooks(name: str) -> None:
    """What export and compression ask a family: the traced module computes the model's outputs; every
    prunable group's slices have n * unit entries along their axis; a student is smaller and takes the same
    inputs. Hooks a family does not implement refuse with a ConfigError."""
    from shipml.config import DistillConfig

    data = _data_for(name)
    task = create_task(name).fit(data)
    torch.manual_seed(0)
    model = task.build_model().eval()
    inputs = task.encode_dataset(data)
    batch = task.make_batch(inputs, torch.arange(4), train=False, gen=torch.Generator())
    if task.kind == "generation":  # what is traced: noise + class -> the sampled images as uint8
        from shipml.tasks.gan import to_uint8

        batch = {"noise": task.noise(4, torch.Generator().manual_seed(0)), "label": torch.arange(4)}
        with torch.no_grad():
            out = model(**batch)
            assert torch.equal(task.export_module(model)(**batch), to_uint8(out))
    else:
        with torch.no_grad():
            out = model(**batch)
            torch.testing.assert_close(task.export_module(model)(**batch), out, atol=1e-5, rtol=1e-4)
    if task.implements("prunable_groups"):
        groups = task.prunable_groups(model, batch)
        assert groups and all(g.n > 1 and g.align in (1, 8) for g in groups)
        for g in groups:
            for m, t in g.tensors():
                assert t.shape[m.dim] == g.n * m.unit, (g.name, m.attr, tuple(t.shape))
    else:
        with pytest.raises(ConfigError, match="prunable"):
            task.prunable_groups(model, batch)
    if task.implements("make_student"):
        student, student_task, info = task.make_student(model, DistillConfig())
        assert info and task.param_count(student) < 0.8 * task.param_count(model)
        with torch.no_grad():
            assert student.eval()(**student_task.make_batch(inputs, torch.arange(4), train=False,
                                                            gen=torch.Generator())).shape == out.shape
        assert task.model_cfg == create_task(name).model_cfg  # the teacher's task is left as it was
    else:
        with pytest.raises(ConfigError, match="student"):
            task.make_student(model, DistillConfig())


def test_hooks_default_to_a_clear_refusal() -> None:
    from types import SimpleNamespace
    from typing import Any

    from shipml.config import DistillConfig

    class Bare(Task):  # a family that implements no architecture hook (not registered)
        name = "bare"

    assert not any(Bare.implements(h) for h in HOOKS[1:]) and not Bare.implements("export_module")
    assert get_task_class("image-classification").implements("prunable_groups")
    with pytest.raises(ValueError, match="not a Task hook"):
        Bare.implements("prunable_group")
    bare: Any = SimpleNamespace(name="bare")  # the defaults read only the name
    marker = torch.nn.Linear(1, 1)
    assert Bare.export_module(bare, marker) is marker  # the default: the model itself is traced
    with pytest.raises(ConfigError, match="'bare' does not describe prunable units"):
        Bare.prunable_groups(bare, marker, {})
    with pytest.raises(ConfigError, match="'bare' does not define a student"):
        Bare.make_student(bare, marker, DistillConfig())
