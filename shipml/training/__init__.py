"""Training: the loop (on HF Accelerate), optimizers and schedules, resumable checkpoints."""

from shipml.training.checkpoint import list_checkpoints, load_latest
from shipml.training.compute import resolve_precision
from shipml.training.loop import TrainResult, cpu_supports_bf16, fit, predict_outputs

__all__ = ["TrainResult", "cpu_supports_bf16", "fit", "list_checkpoints", "load_latest", "predict_outputs",
           "resolve_precision"]
