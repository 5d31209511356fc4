"""Fine-tuning speed of the text task on real emails: dynamic padding + length grouping vs padding to max.

    python bench/text_speed.py [--spam-dir DIR] [--steps 20] [--batch-size 16]

Fetches SpamAssassin from ../shared/data/spamassassin (unless --spam-dir points at a fetched copy),
tokenizes the training split once, then times the same optimizer steps (default backbone, bf16 where
the CPU has it) three ways, at max length 128 and 256:
  grouped  batches of similar length (shipml's training order), each padded to its longest text
  dynamic  shipml's shuffled order without grouping, each batch padded to its longest text
  padded   every batch padded to max length (what a plain tokenizer(padding="max_length") loop does)
  plain    padded, and the backbone's own attention dropout (0.1): a plain Hugging Face fine-tuning loop
           (shipml turns attention dropout off by default: with it, CPU attention leaves the fused kernel)
Prints samples/s, real (non-pad) tokens/s and the speed-up of grouped over padded, plus the
projected wall time of one epoch on the training split.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from shipml.config import DataConfig, TaskConfig, TransformerConfig
from shipml.data import fetch_dataset, load_dataset
from shipml.tasks import create_task
from shipml.training import cpu_supports_bf16

ROOT = Path(__file__).resolve().parents[1]


def _cut(order: np.ndarray, batch_size: int, steps: int) -> list[np.ndarray]:
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(steps)]


def _time(task, model, inputs, batches, width_of, precision: str) -> tuple[float, float, float]:
    """(samples/s, real tokens/s, padded tokens/s) over `batches`, after one warm-up step."""
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
    model.train()
    lengths = inputs["lengths"]
    n = tok = padded = 0
    t0 = 0.0
    for i, idx in enumerate(batches):
        if i == 1:
            t0, n, tok, padded = time.perf_counter(), 0, 0, 0
        idx_t = torch.as_tensor(idx)
        width = width_of(idx_t)
        ids = inputs["input_ids"][idx_t, :width].long()
        mask = (torch.arange(width).unsqueeze(0) < lengths[idx_t].unsqueeze(1)).long()
        y = torch.zeros(len(idx), dtype=torch.long)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = torch.nn.functional.cross_entropy(model(input_ids=ids, attention_mask=mask).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(idx)
        tok += int(lengths[idx_t].sum())
        padded += len(idx) * width
    dt = time.perf_counter() - t0
    return n / dt, tok / dt, padded / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spam-dir", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    precision = "bf16" if cpu_supports_bf16() else "fp32"
    with tempfile.TemporaryDirectory() as tmp:
        spam = args.spam_dir
        if spam is None:
            spam = Path(tmp) / "spam"
            fetch_dataset("spamassassin", spam, from_dir=ROOT.parent / "shared" / "data" / "spamassassin")
        data = load_dataset(DataConfig(path=str(spam), format="emails"), seed=0, task_kind="classification",
                            kind="text")
        train_idx = data.indices("train")
        table = Table(title=f"text fine-tuning speed, all-MiniLM-L6-v2, SpamAssassin train split "
                            f"({len(train_idx)} emails), batch {args.batch_size}, {precision}, "
                            f"{torch.get_num_threads()} threads, {args.steps} steps each")
        for col in ("max len", "batching", "samples/s", "real tokens/s", "padding share", "vs padded",
                    "1 epoch (projected)"):
            table.add_column(col)
        for max_len in (128, 256):
            task = create_task("text-classification", model=TransformerConfig(max_length=max_len),
                               task=TaskConfig(name="text-classification")).fit(data)
            t0 = time.perf_counter()
            inputs = task.encode(data.frame, None)
            tok_s = time.perf_counter() - t0
            gen = torch.Generator().manual_seed(0)
            order = train_idx[torch.randperm(len(train_idx), generator=gen).numpy()]
            grouped = task.arrange_epoch(inputs, order, args.batch_size, gen)
            steps = args.steps + 1
            lengths = inputs["lengths"]
            results = {}
            for name, batches, width in (
                ("plain", _cut(order, args.batch_size, steps), lambda i, m=max_len: m),
                ("padded", _cut(order, args.batch_size, steps), lambda i, m=max_len: m),
                ("dynamic", _cut(order, args.batch_size, steps), lambda i, ln=lengths: int(ln[i].max())),
                ("grouped", _cut(grouped, args.batch_size, steps), lambda i, ln=lengths: int(ln[i].max())),
            ):
                torch.manual_seed(0)
                task.model_cfg = task.cfg.model_copy(update={"attention_dropout": None if name == "plain" else 0.0})
                model = task.build_model()
                results[name] = _time(task, model, inputs, batches, width, precision)
            for name in ("plain", "padded", "dynamic", "grouped"):
                sps, tps, pps = results[name]
                table.add_row(str(max_len), name, f"{sps:.1f}", f"{tps:.0f}", f"{1 - tps / pps:.0%}",
                              f"{sps / results['padded'][0]:.2f}x", f"{len(train_idx) / sps / 60:.1f} min")
            table.add_row(str(max_len), "(tokenizing all emails once)", "", "", "", "", f"{tok_s:.1f} s")
        Console(width=200).print(table)
        print("grouped samples/s measures a sample of batches from one shuffled epoch; the whole epoch mixes"
              " long and short groups in the same proportion.")


if __name__ == "__main__":
    main()
