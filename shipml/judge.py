"""Judging a generation run: a classifier shipml trains on the same data scores the generator's samples.

No Inception weights are available offline, so FID and precision/recall are computed in the feature space of
an image-classification model (the mean-pooled last conv stage of shipml's CNN) trained on the run's own
training split: `<run>/judge/` (or an existing run named by evaluate.judge.run). Its test accuracy goes on
record beside the numbers, because a judge that cannot tell the classes apart cannot say whether the samples
look like them. Such numbers compare runs judged by the same judge on the same data; they are not comparable
with published (Inception, 50k-sample) FIDs: other features, other data, other sample counts.

The real images are the training split, shuffled with the run's seed and cut into two halves A and B of n
images each: FID(B, A) is the floor (what a perfect generator would get with n samples), FID(generated, A)
the figure, and their ratio the headline. The generator draws n samples asking for the classes of A, one each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save

from shipml._console import Reporter
from shipml.config import CNNConfig, Config, TaskConfig, TrainConfig
from shipml.core.files import atomic_write_bytes, atomic_write_json
from shipml.data.dataset import Dataset
from shipml.errors import ConfigError, TrainError
from shipml.evaluate.generation import class_report, frechet_distance, precision_recall
from shipml.runtime.generate import noise
from shipml.tasks import get_task_class
from shipml.tasks.base import Task
from shipml.tasks.gan import to_uint8
from shipml.tasks.image import CNN, ImageClassification
from shipml.training import fit, predict_outputs

__all__ = ["Judge", "load_judge", "score_generation", "train_judge"]

JUDGE_DIR = "judge"
NOTE = ("FID and precision/recall are computed in the feature space of shipml's own judge classifier (trained on "
        "this data set), not Inception (no pretrained Inception weights offline). They compare runs judged by the "
        "same judge on the same data; they are not comparable with published FIDs, which use other features, other "
        "data and 50,000 samples.")


class Judge:
    """A trained image classifier used as a feature extractor and a class decider."""

    def __init__(self, task: ImageClassification, model: CNN, test_accuracy: float | None, source: str) -> None:
        self.task, self.model, self.test_accuracy, self.source = task, model.eval(), test_accuracy, source

    @torch.no_grad()
    def look(self, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, C) uint8 -> (features (N, D) float64, judged class (N,))."""
        inputs = self.task.encode(None, images)
        feats, labels = [], []
        gen = torch.Generator()
        for s in range(0, len(images), batch_size):
            x = self.task.make_batch(inputs, torch.arange(s, min(s + batch_size, len(images))), train=False,
                                     gen=gen)["pixels"]
            fmap = self.model.features(x)  # (B, C, h, w)
            feats.append(fmap.mean(dim=(2, 3)).double().numpy())
            labels.append(self.model.head(fmap).argmax(1).numpy())
        return np.concatenate(feats), np.concatenate(labels)


def _accuracy(task: Task, model: torch.nn.Module, data: Dataset) -> float | None:
    idx = data.indices("test")
    if not len(idx):
        return None
    out = predict_outputs(model, task, task.encode_dataset(data), idx)
    return float((out.argmax(1).numpy() == data.y("test")).mean())


def train_judge(folder: Path, data: Dataset, cfg: Config, reporter: Reporter) -> Judge:
    """Train the image-classification recipe on `data` into `folder` (model.safetensors, task.json,
    metrics.json); a folder that already holds a trained judge is reused."""
    if (folder / "model.safetensors").is_file() and (folder / "task.json").is_file():
        return load_judge(folder)
    recipe = ImageClassification.recipe
    task = ImageClassification(model=CNNConfig(), task=TaskConfig(name="image-classification",
                                                                  **recipe.get("task", {})))
    task.fit(data)
    train = TrainConfig.model_validate({**recipe["train"], "epochs": cfg.evaluate.judge.epochs,
                                        "checkpoint_every": None, "keep_checkpoints": 1})
    reporter.info(f"training the judge classifier ({train.epochs} epochs) into {folder}")
    model = fit(task, data, train, folder, seed=cfg.seed, reporter=reporter).model.eval()
    acc = _accuracy(task, model, data)
    atomic_write_json(folder / "task.json", task.assets())
    atomic_write_json(folder / "metrics.json", {"test": {"accuracy": {"value": acc}}, "epochs": train.epochs})
    atomic_write_bytes(folder / "model.safetensors",
                       save({k: v.contiguous() for k, v in model.state_dict().items()}))
    for leftover in ("best.safetensors",):
        (folder / leftover).unlink(missing_ok=True)
    assert isinstance(model, CNN)
    return Judge(task, model, acc, "trained")


def load_judge(folder: Path) -> Judge:
    """A judge from a folder with task.json + model.safetensors: a judge/ folder, or an image-classification
    run directory (its model/ folder)."""
    folder = Path(folder)
    where = folder / "model" if (folder / "model" / "task.json").is_file() else folder
    try:
        assets = json.loads((where / "task.json").read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"evaluate.judge.run: {folder} holds no readable task.json ({err}); give a finished "
                          "image-classification run") from None
    if assets.get("task") != "image-classification":
        raise ConfigError(f"evaluate.judge.run: {folder} is a {assets.get('task')!r} run; the judge must be an "
                          "image-classification run on the same images")
    task = get_task_class("image-classification").from_assets(assets)
    assert isinstance(task, ImageClassification)
    model = task.build_model(pretrained=False)
    model.load_state_dict(load_file(str(where / "model.safetensors")))
    metrics_file = next((p for p in (where / "metrics.json", folder / "metrics.json") if p.is_file()), None)
    acc = None
    if metrics_file is not None:
        acc = (json.loads(metrics_file.read_text()).get("test") or {}).get("accuracy", {}).get("value")
    assert isinstance(model, CNN)
    return Judge(task, model, acc, "trained" if where == folder else str(folder))


def _halves(data: Dataset, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    train = data.indices("train")
    n = min(n or 5000, len(train) // 2)
    if n < 10:
        raise TrainError(f"the training split has {len(train)} images; judging needs two halves of at least 10")
    order = np.random.default_rng(seed).permutation(train)
    return np.sort(order[:n]), np.sort(order[n:2 * n])


@torch.no_grad()
def sample(task: Task, model: torch.nn.Module, labels: np.ndarray, seed: int, batch_size: int = 256) -> np.ndarray:
    """(N, H, W, C) uint8 samples asking for `labels`, noise from `runtime.generate.noise(seed)`."""
    z = torch.from_numpy(noise(seed, len(labels), task.prep["z_dim"]))
    y = torch.from_numpy(labels.astype(np.int64))
    model.eval()
    return np.concatenate([to_uint8(model(z[s:s + batch_size], y[s:s + batch_size])).numpy()
                           for s in range(0, len(labels), batch_size)])


def score_generation(run_dir: Path, cfg: Config, task: Task, model: torch.nn.Module, data: Dataset, *,
                     reporter: Reporter, judge: Judge | None = None) -> dict[str, Any]:
    """Judge the generator's samples; writes and returns metrics.json (docs/generation.md says what each means)."""
    jc = cfg.evaluate.judge
    if judge is None:
        judge = load_judge(Path(jc.run)) if jc.run else train_judge(run_dir / JUDGE_DIR, data, cfg, reporter)
    assert data.images is not None and task.classes is not None
    if judge.task.classes != task.classes or judge.task.prep["size"] != task.prep["size"]:
        raise ConfigError(f"evaluate.judge.run: the judge knows classes {judge.task.classes} at size "
                          f"{judge.task.prep['size']}, this run {task.classes} at {task.prep['size']}; judge with a "
                          "run on the same images, or leave evaluate.judge.run empty to train one")
    a, b = _halves(data, jc.samples, cfg.seed)
    y = data.y()
    conditional = bool(task.prep["conditional"])
    fake = sample(task, model, y[a], cfg.seed + 1)
    feats_a, judged_a = judge.look(data.images[a])
    feats_b, _ = judge.look(data.images[b])
    feats_f, judged_f = judge.look(fake)
    fid, floor = frechet_distance(feats_f, feats_a), frechet_distance(feats_b, feats_a)
    precision, recall = precision_recall(feats_a, feats_f, jc.k)
    real_p, real_r = precision_recall(feats_a, feats_b, jc.k)
    classes = class_report(task.classes, y[a], judged_f, feats_a, y[a], feats_f, jc.k, conditional)
    head = {"fid_ratio": {"value": fid / floor if floor > 0 else float("inf")}, "fid": {"value": fid},
            "fid_floor": {"value": floor}, "precision": {"value": precision}, "recall": {"value": recall},
            "classes_covered": {"value": classes["covered"]}, "n": len(a)}
    if conditional:
        head["requested_share"] = {"value": classes["requested_share"]}
    out = {"test": head,
           "generation": {"n": len(a), "k": jc.k, "conditional": conditional, "fid": fid, "fid_floor": floor,
                          "real_precision": real_p, "real_recall": real_r, "judge_agrees_on_real": float(
                              (judged_a == y[a]).mean()), **classes},
           "judge": {"source": judge.source, "test_accuracy": judge.test_accuracy,
                     "features": f"mean-pooled last conv stage of shipml's CNN ({feats_a.shape[1]} dims)",
                     "note": NOTE}}
    atomic_write_bytes(run_dir / "metrics.json", (json.dumps(out, indent=2) + "\n").encode())
    if classes["collapsed"]:
        reporter.warn(f"classes not covered (possible mode collapse): {', '.join(classes['collapsed'])}")
    return out
