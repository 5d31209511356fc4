"""PyTorch model -> ONNX file, with dynamic batch (and sequence) axes.

Text models built on a BERT-family encoder are exported through `BertGraph`: the same weights, written
as the classic BERT graph (additive padding mask, matmul attention). The encoder's own forward goes
through transformers' masking utilities and SDPA, which export to a graph onnxruntime runs slowly
(measured on MiniLM-L6, batch 32, 256 tokens: 38% of the time in `Where` nodes of the mask handling) and
which onnxruntime's quantizer cannot fully handle. The parity check in `export.package` guards the
rewrite: it compares the exported graph with the original module on the real test split.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
from torch import nn

from shipml.errors import ExportError
from shipml.tasks.base import Task, Tensors

__all__ = ["OPSET", "BertGraph", "export_onnx", "is_bert_classifier"]

OPSET = 17
_SEQUENCE_INPUTS = {"input_ids", "attention_mask"}


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


class _Keywords(nn.Module):
    """Positional inputs (what the exporter passes) -> the keyword arguments our models take."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, args, strict=True)))


def export_onnx(model: nn.Module, task: Task, example: Tensors, path: Path) -> tuple[list[str], str]:
    """Write `model` (fp32, eval mode) as ONNX to `path`; `example` is one batch from `task.make_batch`.
    Returns (the traced input names, output name); the exporter drops an input the graph does not use
    (`cat` without categorical columns), which `build_package` reads off the file."""
    names = list(example)
    output = "logits" if task.kind == "classification" else "value"
    model = model.float().eval()
    graph: nn.Module = BertGraph(model) if is_bert_classifier(model) else model
    wrapped = _Keywords(graph, names).eval()
    axes: dict[str, dict[int, str]] = {n: ({0: "batch", 1: "sequence"} if n in _SEQUENCE_INPUTS else {0: "batch"})
                                       for n in names}
    axes[output] = {0: "batch"}
    args = tuple(example[n].contiguous() for n in names)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes are not the user's
            torch.onnx.export(wrapped, args, str(path), input_names=names, output_names=[output],
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    except Exception as err:  # the exporter raises many types; all mean "this model cannot be exported"
        raise ExportError(f"cannot export the {type(model).__name__} model to ONNX: {err}") from None
    return names, output
