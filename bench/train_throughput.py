"""Training-loop throughput: shipml's loop against a plain hand-written PyTorch loop.

Same model (the default image CNN), same data (MNIST 5k, train split), same batch size, same
precision, same number of steps; augmentation off in both so that only the loop is compared.
Prints samples/s for each and the ratio (the target: shipml within 10% of the plain loop).

    python bench/train_throughput.py [--data ../shared/data/mnist5k.tar.gz] [--epochs 3] [--precision bf16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from shipml.config import AugmentConfig, DataConfig, TaskConfig, TrainConfig
from shipml.data import load_dataset
from shipml.tasks import create_task
from shipml.training import cpu_supports_bf16, fit

ROOT = Path(__file__).resolve().parents[1]


def plain_loop(task, data, cfg: TrainConfig, precision: str) -> float:
    """The loop a user would write by hand: shuffle, slice, forward, backward, step. Returns samples/s."""
    torch.manual_seed(0)
    model = task.build_model()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    inputs = task.encode_dataset(data)
    targets = task.encode_targets(data.y())
    train_idx = torch.as_tensor(data.indices("train"))
    gen = torch.Generator().manual_seed(0)
    n = 0
    t0 = time.perf_counter()
    for _ in range(cfg.epochs):
        order = train_idx[torch.randperm(len(train_idx), generator=gen)]
        for start in range(0, len(order) - 1, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            batch = task.make_batch(inputs, idx, train=False, gen=gen)  # normalise only, no augmentation
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = torch.nn.functional.cross_entropy(model(**batch).float(), targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += len(idx)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist5k.tar.gz"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16" if cpu_supports_bf16() else "fp32")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    data_cfg = DataConfig(path=args.data)
    data = load_dataset(data_cfg, seed=0, task_kind="classification", kind="images")
    # augmentation off (a no-op augment config is skipped by the task), so only the loops differ
    task = create_task("image-classification", task=TaskConfig(name="image-classification",
                                                               augment=AugmentConfig(shift=0, rotation=0))).fit(data)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, precision=args.precision, schedule="constant",
                      checkpoint_every=None, early_stopping={"patience": None})
    results = []
    for _ in range(2):  # alternate to even out thermal/turbo effects
        plain = plain_loop(task, data, cfg, args.precision)
        with tempfile.TemporaryDirectory() as tmp:
            res = fit(task, data, cfg, Path(tmp), seed=0)
        results.append((plain, res.samples_per_s))
    plain = max(r[0] for r in results)
    ours = max(r[1] for r in results)
    table = Table(title=f"training throughput, MNIST 5k train split ({len(data.indices('train'))} images), "
                        f"batch {args.batch_size}, {args.precision}, {torch.get_num_threads()} threads")
    for col in ("loop", "samples/s", "relative"):
        table.add_column(col)
    table.add_row("plain PyTorch loop", f"{plain:.0f}", "1.00")
    table.add_row("shipml (Accelerate, checkpoints, eval, logging)", f"{ours:.0f}", f"{ours / plain:.2f}")
    Console().print(table)
    print("shipml's figure includes its per-epoch validation pass and end-of-epoch checkpoint writes.")


if __name__ == "__main__":
    main()
