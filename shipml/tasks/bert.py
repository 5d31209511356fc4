"""What the text task knows about BERT-family encoders beyond training them: how to export one, which of
its units prune, and how to make a shallower student of it. `TextClassification`'s hooks call these.

Export: `BertGraph` writes the same weights as the classic BERT graph (additive padding mask, matmul
attention). The encoder's own forward goes through transformers' masking utilities and SDPA, which export
to a graph onnxruntime runs slowly (measured on MiniLM-L6, batch 32, 256 tokens: 38% of the time in
`Where` nodes of the mask handling) and which onnxruntime's quantizer cannot fully handle. The parity
check in `export.package` guards the rewrite: it compares the exported graph with the original module on
the real test split.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from shipml.errors import ConfigError
from shipml.tasks.structure import Group, Member

__all__ = ["BertGraph", "bert_groups", "bert_student", "is_bert_classifier", "student_layers"]


def is_bert_classifier(model: nn.Module) -> bool:
    """A `TextClassifier` whose encoder has BERT's layout (embeddings, encoder.layer[i].attention.self...)."""
    enc = getattr(model, "encoder", None)
    layers = getattr(getattr(enc, "encoder", None), "layer", None)
    emb = getattr(enc, "embeddings", None)
    if layers is None or emb is None or not len(layers):
        return False
    first = layers[0]
    act = getattr(getattr(enc, "config", None), "hidden_act", None)
    return (all(hasattr(emb, a) for a in ("word_embeddings", "position_embeddings", "LayerNorm"))
            and hasattr(first, "attention") and hasattr(first.attention, "self")
            and hasattr(first.attention.self, "query") and hasattr(first, "intermediate") and act == "gelu"
            and getattr(enc.config, "position_embedding_type", "absolute") == "absolute")


def _require_bert(model: nn.Module, what: str) -> None:
    if not is_bert_classifier(model):
        enc = type(getattr(model, "encoder", model)).__name__
        raise ConfigError(f"{what} supports BERT-family encoders (absolute positions, GELU); this model's encoder "
                          f"is {enc}. Use int8 or fp16 for it")


class BertGraph(nn.Module):
    """A BERT-family `TextClassifier` as the classic BERT graph. Works for pruned encoders too: the head
    count of each layer is read from its query projection (out_features / head size)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.clf = classifier

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        enc = self.clf.encoder
        emb = enc.embeddings
        t = input_ids.shape[1]
        x = emb.word_embeddings(input_ids) + emb.position_embeddings.weight[:t].unsqueeze(0)  # (B, T, H)
        if getattr(emb, "token_type_embeddings", None) is not None:
            x = x + emb.token_type_embeddings.weight[0]  # token type 0 everywhere, as in training
        x = emb.LayerNorm(x)
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0  # (B, 1, 1, T)
        b = x.shape[0]
        for layer in enc.encoder.layer:
            sa = layer.attention.self
            d = sa.attention_head_size

            def heads(h: torch.Tensor, d: int = d) -> torch.Tensor:  # (B, T, n*d) -> (B, n, T, d)
                return h.view(b, t, h.shape[-1] // d, d).permute(0, 2, 1, 3)

            q, k, v = heads(sa.query(x)), heads(sa.key(x)), heads(sa.value(x))
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d) + bias  # (B, n, T, T)
            ctx = torch.matmul(torch.softmax(scores, dim=-1), v)  # (B, n, T, d)
            ctx = ctx.permute(0, 2, 1, 3).reshape(b, t, ctx.shape[1] * d)
            out = layer.attention.output
            x = out.LayerNorm(out.dense(ctx) + x)
            h = nn.functional.gelu(layer.intermediate.dense(x))
            x = layer.output.LayerNorm(layer.output.dense(h) + x)
        if self.clf.pooling == "cls":
            pooled = x[:, 0]
        else:
            m = attention_mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
            pooled = (x * m).sum(1) / m.sum(1).clamp(min=1)
        return self.clf.head(pooled)  # (B, n_classes)


def _sync_heads(sa: nn.Module) -> None:
    """transformers' self-attention reads its head count from these attributes, not from the weights."""
    sa.num_attention_heads = sa.query.out_features // sa.attention_head_size
    sa.all_head_size = sa.query.out_features


def bert_groups(model: nn.Module) -> list[Group]:
    """Per layer: its attention heads (q/k/v rows, output-projection columns) and its FFN neurons."""
    _require_bert(model, "structured pruning")
    groups = []
    for i, layer in enumerate(model.encoder.encoder.layer):
        sa, out = layer.attention.self, layer.attention.output
        d, n = sa.attention_head_size, sa.query.out_features // sa.attention_head_size
        heads = Group(f"layer{i}.heads", n, align=1, after=lambda sa=sa: _sync_heads(sa))
        for lin in (sa.query, sa.key, sa.value):
            heads.members += [Member(lin, "weight", 0, d), Member(lin, "bias", 0, d)]
        heads.members.append(Member(out.dense, "weight", 1, d))
        ffn = Group(f"layer{i}.ffn", layer.intermediate.dense.out_features)
        ffn.members += [Member(layer.intermediate.dense, "weight", 0), Member(layer.intermediate.dense, "bias", 0),
                        Member(layer.output.dense, "weight", 1)]
        groups += [heads, ffn]
    return groups


def student_layers(n_teacher: int, n_student: int) -> list[int]:
    """Alternate teacher layers, keeping the top one: 6 -> 3 gives [1, 3, 5]."""
    if not 1 <= n_student <= n_teacher:
        raise ConfigError(f"compress.distill.layers: {n_student} must be between 1 and the teacher's {n_teacher}")
    step = n_teacher / n_student
    return [round(n_teacher - 1 - i * step) for i in range(n_student)][::-1]


def bert_student(teacher: nn.Module, layers: int | None) -> tuple[nn.Module, dict[str, Any]]:
    """A copy of `teacher` keeping `layers` encoder layers (default half), taken from alternate teacher layers;
    embeddings and head are the teacher's. Returns (student, params on record)."""
    _require_bert(teacher, "distillation")
    n = len(teacher.encoder.encoder.layer)
    k = layers or max(1, n // 2)
    keep = student_layers(n, k)
    model = copy.deepcopy(teacher)
    model.encoder.encoder.layer = nn.ModuleList([model.encoder.encoder.layer[i] for i in keep])
    model.encoder.config.num_hidden_layers = k
    return model, {"layers": k, "from_teacher_layers": keep}
