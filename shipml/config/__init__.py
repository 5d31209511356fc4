"""shipml.yaml: one small pydantic model per section, frozen and validated at load.

A config is the whole recipe of a run. `load_config` reads YAML, applies `--set a.b=c` overrides and
validates; every problem becomes a `ConfigError` naming the field path, the bad value and what is
allowed. The resolved config (defaults filled in) is written into every run directory.

    schema.py    the sections (data, task, model, train, evaluate) and `Config`
    gan.py       the GAN model and its judge; shipping.py: compress, release, tune; base.py: `Section`
    loading.py   load_config / parse_config / apply_overrides / dump_config
"""

from shipml.config.loading import apply_overrides, dump_config, load_config, parse_config
from shipml.config.schema import (
    ArchiveConfig,
    AugmentConfig,
    CNNConfig,
    CompressConfig,
    Config,
    DataConfig,
    DistillConfig,
    EarlyStoppingConfig,
    EmailConfig,
    EvaluateConfig,
    GANConfig,
    JudgeConfig,
    MLPConfig,
    ModelConfig,
    PruneConfig,
    QuantizeConfig,
    ReleaseConfig,
    SplitConfig,
    TaskConfig,
    ThresholdConfig,
    TrainConfig,
    TransformerConfig,
    TuneConfig,
)

__all__ = [
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
    "apply_overrides",
    "dump_config",
    "load_config",
    "parse_config",
]
