"""What live traffic is compared with: per-row *signals* of inputs and predictions, and a package's reference
statistics of them (reference.json, covered by the manifest).

One function computes the signals of rows, `signals`, for the export (on training rows, to build the
reference) and for the server (on live requests, to fill the drift window), so both sides measure the same
thing. Signals per data kind:

    text     tokens (length), rare_share (share of tokens seen in fewer than 2 training texts; for a training
             text itself, fewer than 2 others), unknown_share
             ([UNK]), non_ascii_share, digit_share (of characters), urls (count)
    images   brightness, contrast (mean and std of pixels / 255), channel_mean:<r|g|b> for colour images
    table    feature:<name> for every feature (numbers in their units, imputed as the model sees them;
             categories as labels)
    all      predicted (class label) and confidence, or prediction (regression)

The reference keeps, per numeric signal, 101 quantiles and decile bins with counts (PSI and KS need no more),
per categorical signal the counts. Input signals come from up to REFERENCE_ROWS training rows; prediction
signals from the held-out (test) outputs export computes anyway, because on training rows the model is more
confident than it will ever be live.
"""

from __future__ import annotations

import base64
import functools
import re
from typing import Any

import numpy as np

from shipml.errors import ExportError
from shipml.runtime.predict import Predictor
from shipml.runtime.preprocess import Prepared

__all__ = ["REFERENCE", "REFERENCE_ROWS", "build_reference", "common_tokens", "prediction_signals", "signals",
           "token_document_counts"]

REFERENCE = "reference.json"
REFERENCE_ROWS = 5000
_URL = re.compile(r"https?://|www\.", re.IGNORECASE)
_CHANNELS = ("r", "g", "b")
_NO_DIGITS = str.maketrans("", "", "0123456789")


def token_document_counts(prepared: Prepared, vocab: int) -> np.ndarray:
    """For each token id, in how many of the given texts it occurs (document frequency)."""
    df = np.zeros(vocab, dtype=np.int64)
    ids, lengths = prepared.arrays["ids"], prepared.arrays["lengths"]
    for row, n in zip(ids, lengths, strict=True):
        body = row[1 : max(1, int(n) - 1)]  # without [CLS] and [SEP]
        df[np.unique(body[(body >= 0) & (body < vocab)])] += 1
    return df


def common_tokens(prepared: Prepared, vocab: int) -> np.ndarray:
    """Token ids that occur in at least 2 of the given texts, as a boolean mask over the vocabulary."""
    return token_document_counts(prepared, vocab) >= 2


def _mask_b64(mask: np.ndarray) -> str:
    return base64.b64encode(np.packbits(mask.astype(np.uint8)).tobytes()).decode()


@functools.lru_cache(maxsize=8)  # decoded once per package, not on every request (a str caches its own hash)
def _mask_from(text: str, vocab: int) -> np.ndarray:
    try:
        return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[:vocab].astype(bool)
    except (ValueError, TypeError):
        raise ExportError("reference.json: `common_tokens` is not a valid bitmap; re-export the package") from None


def _text_signals(predictor: Predictor, prepared: Prepared, common: np.ndarray | None) -> dict[str, np.ndarray]:
    prep = predictor.preprocessor
    ids, lengths = prepared.arrays["ids"], prepared.arrays["lengths"]
    n = len(prepared)
    unk = prep.tokenizer.token_to_id("[UNK]")  # type: ignore[attr-defined]
    out: dict[str, np.ndarray] = {"tokens": lengths.astype(np.float64)}
    rare, unknown = np.zeros(n), np.zeros(n)
    for i in range(n):
        body = ids[i, 1 : max(1, int(lengths[i]) - 1)]
        if len(body):
            if common is not None:
                inside = (body >= 0) & (body < len(common))
                rare[i] = 1.0 - float(common[body[inside]].sum()) / len(body)
            if unk is not None:
                unknown[i] = float((body == unk).mean())
    if common is not None:
        out["rare_share"] = rare
    if unk is not None:
        out["unknown_share"] = unknown
    texts = prepared.texts or []
    chars = np.array([max(1, len(t)) for t in texts], dtype=np.float64)
    # counted by C-level string methods: a Python loop per character would cost more than the network call
    non_ascii = [len(t) - len(t.encode("ascii", "ignore")) for t in texts]
    out["non_ascii_share"] = np.array(non_ascii, dtype=np.float64) / chars
    out["digit_share"] = np.array([len(t) - len(t.translate(_NO_DIGITS)) for t in texts], dtype=np.float64) / chars
    out["urls"] = np.array([len(_URL.findall(t)) for t in texts], dtype=np.float64)
    return out


def _image_signals(prepared: Prepared) -> dict[str, np.ndarray]:
    pixels = prepared.arrays["pixels"].astype(np.float32) / 255.0  # (N, H, W, C)
    out = {"brightness": pixels.mean(axis=(1, 2, 3)).astype(np.float64),
           "contrast": pixels.reshape(len(pixels), -1).std(axis=1).astype(np.float64)}
    if pixels.shape[-1] == 3:
        for c, name in enumerate(_CHANNELS):
            out[f"channel_mean:{name}"] = pixels[..., c].mean(axis=(1, 2)).astype(np.float64)
    return out


def _table_signals(predictor: Predictor, prepared: Prepared) -> dict[str, np.ndarray]:
    prep = predictor.preprocessor.prep
    out: dict[str, np.ndarray] = {}
    num, cat = prepared.arrays["num"], prepared.arrays["cat"]
    for j, spec in enumerate(prep["numeric"]):
        out[f"feature:{spec['name']}"] = num[:, j].astype(np.float64) * spec["std"] + spec["mean"]  # units again
    for j, spec in enumerate(prep["categorical"]):
        labels = np.array(["(missing or unseen)", *spec["categories"]], dtype=object)
        out[f"feature:{spec['name']}"] = labels[cat[:, j]]
    return out


def signals(predictor: Predictor, prepared: Prepared, reference: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Per-row input signals of prepared rows (numbers as float64, categories as object arrays of labels).
    Text's rare_share needs the reference's common-token bitmap (absent without a reference)."""
    kind = predictor.spec["data_kind"]
    if kind == "text":
        common = None
        if reference and reference.get("common_tokens"):
            common = _mask_from(reference["common_tokens"], int(reference.get("vocab", 0)))
        return _text_signals(predictor, prepared, common)
    if kind == "images":
        return _image_signals(prepared)
    return _table_signals(predictor, prepared)


def prediction_signals(predictor: Predictor, values: np.ndarray) -> dict[str, np.ndarray]:
    """predicted + confidence (classification), or prediction (regression), per row."""
    if predictor.kind != "classification":
        return {"prediction": np.asarray(values, dtype=np.float64)}
    decided = predictor.decide(values)
    classes = np.array(predictor.classes or [], dtype=object)
    return {"predicted": classes[decided], "confidence": values[np.arange(len(values)), decided].astype(np.float64)}


def _summary(values: np.ndarray) -> dict[str, Any]:
    """A numeric signal's reference: 101 quantiles, decile bin edges and the rows per bin; or category counts."""
    if values.dtype == object:
        labels, counts = np.unique(values.astype(str), return_counts=True)
        return {"kind": "categorical", "n": len(values), "counts": dict(zip(labels.tolist(), counts.tolist(),
                                                                                     strict=True))}
    v = values[np.isfinite(values)]
    quantiles = np.quantile(v, np.linspace(0, 1, 101)) if len(v) else np.zeros(101)
    edges = np.unique(quantiles[10:100:10])  # interior decile edges; ties (e.g. texts cut at max length) merge
    counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
    return {"kind": "numeric", "n": len(v), "quantiles": [float(q) for q in quantiles],
            "edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def build_reference(predictor: Predictor, train_prepared: Prepared, heldout_values: np.ndarray) -> dict[str, Any]:
    """reference.json's content: summaries of every input signal on training rows (text: with the common-token
    bitmap learned from them) and of the prediction signals on held-out outputs."""
    ref: dict[str, Any] = {"format": 1, "rows": {"inputs": len(train_prepared), "predictions": len(heldout_values)}}
    if predictor.spec["data_kind"] == "text":
        vocab = int(predictor.preprocessor.tokenizer.get_vocab_size())  # type: ignore[attr-defined]
        df = token_document_counts(train_prepared, vocab)
        ref["vocab"] = vocab
        ref["common_tokens"] = _mask_b64(df >= 2)  # what a live text is measured against
        # a training text's own tokens count towards df: measured against df >= 2 it would look less rare than
        # any new text of the same kind. Leave it out: for its tokens, "in 2 other texts" is df >= 3.
        inputs = _text_signals(predictor, train_prepared, df >= 3)
    else:
        inputs = signals(predictor, train_prepared, ref)
    values = inputs | prediction_signals(predictor, heldout_values)
    ref["signals"] = {name: _summary(v) for name, v in values.items()}
    return ref
