"""The sections of shipml.yaml that act after training: `compress` (variants and the frontier), `release`
(the registry's gates) and `tune` (the hyperparameter search). Kept beside schema.py, which assembles `Config`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shipml.config.base import Section as _Section

__all__ = ["CompressConfig", "DistillConfig", "PruneConfig", "QuantizeConfig", "ReleaseConfig", "TuneConfig"]


class PruneConfig(_Section):
    """Structured pruning: whole attention heads and FFN neurons (transformers), channels (CNNs) or hidden
    units (MLPs) are removed by importance, then the smaller model is fine-tuned briefly to recover."""

    ratio: float = Field(0.3, gt=0, lt=1, description="Share of heads / neurons / channels / units to remove, "
                         "per layer (0 < ratio < 1).")
    importance_batches: int = Field(16, ge=1, description="Training batches used to score importance "
                                    "(first-order Taylor: (sum of weight x gradient over a head/neuron/channel)^2, "
                                    "averaged over the batches).")
    recovery_epochs: int = Field(1, ge=0, description="Fine-tuning epochs after pruning (0: none).")
    lr_scale: float = Field(0.5, gt=0, description="Recovery learning rate as a fraction of train.lr.")


class DistillConfig(_Section):
    """Knowledge distillation: a smaller student learns the trained model's soft labels and the true labels."""

    layers: int | None = Field(None, ge=1, description="Transformer student depth; default: half the teacher's, "
                               "initialised from alternate teacher layers.")
    width: float = Field(0.5, gt=0, le=1, description="CNN / MLP student width as a fraction of the teacher's.")
    temperature: float = Field(2.0, gt=0, description="Softmax temperature of the soft labels.")
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the soft-label loss (1 - alpha: true labels).")
    epochs: int | None = Field(None, ge=1, description="Student training epochs; default: train.epochs.")
    lr_scale: float = Field(1.0, gt=0, description="Student learning rate as a multiple of train.lr.")


class QuantizeConfig(_Section):
    """int8 quantization with onnxruntime: dynamic for transformers, static (calibrated) for CNNs and MLPs."""

    calibration_rows: int = Field(256, ge=1, description="Training rows used to calibrate static int8.")
    per_channel: bool = Field(True, description="One scale per output channel of each weight (more accurate).")


class CompressConfig(_Section):
    """`shipml compress`: which variants to make and how the frontier is measured."""

    methods: list[str] = Field(
        default_factory=lambda: ["int8", "prune", "distill", "distill+int8"],
        description="Variants to build: int8, fp16, prune, distill, or a chain such as distill+int8 "
        "(a pruning or distillation step first, then quantization).",
    )
    target: str | None = Field(None, description='Constraints for picking a variant, e.g. "p99_ms<=15, '
                               'accuracy_drop<=0.005" (see docs/compress.md).')
    prune: PruneConfig = Field(default_factory=PruneConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig)
    latency_requests: int = Field(200, ge=10, description="Batch-1 requests timed per variant for p50/p99.")
    batch_size: int = Field(32, ge=1, description="Batch size of the throughput figure.")


class ReleaseConfig(_Section):
    """`shipml release`: the gates a version of this run must pass against production (docs/registry.md)."""

    gates: list[str] | None = Field(
        None, description='Gates, e.g. ["f1 >= production.f1 - 0.002", "paired", "p99_ms <= 20", "signature"]; '
        "null = the defaults (headline not worse than production by more than 0.005, the paired test, the "
        "signature). `shipml release --gate` overrides them.")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="Significance level of the paired test: a candidate "
                         "worse than production with p below it is blocked.")


class TuneConfig(_Section):
    """`shipml tune`: a hyperparameter search with Optuna over `space` (docs/scaling.md). Each trial is an
    ordinary run scored on the validation split; the test split is scored once, for the best trial."""

    space: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description='Config fields to search, e.g. {"train.lr": {"loguniform": [1e-5, 1e-3]}, '
        '"train.batch_size": {"choice": [16, 32]}, "train.epochs": {"int": [2, 8]}, "train.momentum": {"uniform": '
        '[0.8, 0.99], "when": {"train.optimizer": "sgd"}}}: loguniform, uniform, int, logint or choice; `when` makes '
        "a parameter conditional on another's value.")
    metric: str | None = Field(None, description="Validation metric to optimise (accuracy, macro_f1, loss, r2, "
                               "mae); null = the task's headline. Losses and errors are minimised.")
    trials: int = Field(20, ge=1, description="Trials in the study (all workers together).")
    timeout: float | None = Field(None, gt=0, description="Stop starting trials after this many seconds.")
    sampler: Literal["tpe", "random"] = Field("tpe", description="Optuna sampler (seeded by `seed`).")
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median", description="Stop unpromising trials early from their per-epoch validation metric.")
