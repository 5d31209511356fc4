"""Raw inputs -> model feeds, from the JSON in signature["preprocessing"] alone (no torch, no task code).

Raw inputs are read by `runtime.inputs`, and decoded with the same `shipml.core` functions training uses
(image decoding, number and category conversion, email parsing); the scaling, lookups and tokenization
here equal the training tasks' own tensor encoders (shipml/tasks/), which a test generated from the task
registry checks row for row, edge rows included. `prepare` does the per-row work once (decode, parse,
tokenize), `feeds` cuts one batch out of it, so batching and measuring never redo the expensive part.
The JSON values are checked when a preprocessor is built: a package with a string mean or a zero std
is refused with the field named, instead of predicting from NaN.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from PIL import Image

from shipml.core.images import IMAGE_SUFFIXES, to_array
from shipml.core.values import category_text, finite_numbers
from shipml.errors import DataError, ExportError
from shipml.runtime.inputs import (
    EncodedImages,
    RawEmails,
    file_texts,
    frame_rows,
    image_items,
    message_texts,
    text_items,
)

__all__ = ["PREPROCESSORS", "Prepared", "Preprocessor", "make_preprocessor", "table_arrays", "token_rows", "truncate"]


@dataclass
class Prepared:
    """Rows after the per-row work: `arrays` are row-aligned (first axis = row)."""

    arrays: dict[str, np.ndarray]
    sources: list[str] | None = None  # where each row came from (file path, array index), when known
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (item, reason) of unreadable inputs
    texts: list[str] | None = None  # text packages: the texts that were tokenized

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    @property
    def lengths(self) -> np.ndarray | None:
        """Text packages: tokens per row ([CLS] and [SEP] included), for batching by length."""
        return self.arrays.get("lengths")


def _need(prep: dict[str, Any], *keys: str) -> None:
    missing = [k for k in keys if k not in prep]
    if missing:
        raise ExportError(f"signature.json preprocessing lacks {missing}; the package is incomplete, re-export it")


def _bad(field: str, value: Any, need: str) -> ExportError:
    return ExportError(f"signature.json preprocessing.{field} is {value!r}; it must be {need}. The package is "
                       "damaged or was edited by hand: re-export it")


def _numbers(field: str, value: Any, n: int | None = None, positive: bool = False) -> list[float]:
    """A list of finite numbers (of length n; > 0 when `positive`), else an ExportError naming the field."""
    need = f"a list of {n or 'some'} finite{' positive' if positive else ''} numbers"
    if not isinstance(value, list) or (n is not None and len(value) != n):
        raise _bad(field, value, need)
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or (positive and v <= 0):
            raise _bad(field, value, need)
        out.append(float(v))
    return out


class Preprocessor(ABC):
    """One data kind's preprocessing, built from the package's preprocessing JSON and assets folder."""

    data_kind: ClassVar[str]
    what: ClassVar[str]  # the raw inputs accepted, for error messages

    def __init__(self, prep: dict[str, Any], assets: Path) -> None:
        self.prep = prep
        self.assets = Path(assets)

    @abstractmethod
    def _items(self, raw: Any) -> Any:
        """The raw input as a row sequence (array, frame, list of texts or files), nothing decoded yet."""

    @abstractmethod
    def prepare(self, raw: Any) -> Prepared:
        """The per-row work (decode, parse, tokenize), once for all rows."""

    @abstractmethod
    def feeds(self, prepared: Prepared, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Model inputs for the given rows of a Prepared: one batch."""

    def split(self, raw: Any) -> list[Any]:
        """The raw input as one-row raw inputs, each accepted by `prepare` (per-request latency)."""
        items = self._items(raw)
        take = items.iloc if isinstance(items, pd.DataFrame) else items
        return [take[i : i + 1] for i in range(len(items))]

    def order(self, prepared: Prepared) -> np.ndarray:
        """Row order for batched inference (text: longest first, so a batch pads little)."""
        return np.arange(len(prepared))


# ---------------------------------------------------------------------------------------------- images
class ImagePreprocessor(Preprocessor):
    """uint8 (N, H, W, C) pixels -> `pixels` float32 (N, C, H, W) = (pixels * scale - mean) / std."""

    data_kind = "images"
    what = "(N, H, W[, C]) uint8 pixels, a .npz with an 'images' array, an image file or folder, or image paths"

    def __init__(self, prep: dict[str, Any], assets: Path) -> None:
        super().__init__(prep, assets)
        _need(prep, "size", "channels", "scale", "mean", "std")
        if prep.get("layout", "NCHW") != "NCHW":
            raise ExportError(f"image layout {prep['layout']!r} is not supported by this shipml (only NCHW)")
        size, channels = prep["size"], prep["channels"]
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            raise _bad("size", size, "[height, width] in pixels")
        if channels not in (1, 3):
            raise _bad("channels", channels, "1 (grey) or 3 (RGB)")
        self.size, self.channels = (size[0], size[1]), channels
        _numbers("scale", [prep["scale"]], 1, positive=True)
        self.mean = np.asarray(_numbers("mean", prep["mean"], channels), dtype=np.float32).reshape(1, -1, 1, 1)
        self.std = np.asarray(_numbers("std", prep["std"], channels, positive=True), dtype=np.float32).reshape(
            1, -1, 1, 1)

    def _pixels(self, arr: np.ndarray, where: str) -> np.ndarray:
        (h, w), c = self.size, self.channels
        pixels = arr[..., None] if arr.ndim == 3 else arr
        if pixels.ndim != 4 or pixels.shape[1:] != (h, w, c) or pixels.dtype != np.uint8:
            raise DataError(f"{where}: expected uint8 images of shape (N, {h}, {w}, {c}), got {arr.dtype} "
                            f"{arr.shape}; give images of that size, or image files (they are resized)")
        return pixels

    def _items(self, raw: Any) -> np.ndarray | list[Path] | EncodedImages:
        """An array of pixels, or the image files (or a client's encoded images) to decode."""
        return image_items(raw, self._pixels, self.what, IMAGE_SUFFIXES)

    def prepare(self, raw: Any) -> Prepared:
        got = self._items(raw)
        if isinstance(got, np.ndarray):
            return Prepared({"pixels": got}, sources=[str(i) for i in range(len(got))])
        if not got:  # an empty list of paths: no rows, as for an empty table or list of texts
            (h, w), c = self.size, self.channels
            return Prepared({"pixels": np.zeros((0, h, w, c), dtype=np.uint8)}, sources=[])
        arrays, sources, skipped = [], [], []
        for i, item in enumerate(got):
            name = f"image {i}" if isinstance(item, bytes) else str(item)
            try:
                with Image.open(io.BytesIO(item) if isinstance(item, bytes) else item) as im:
                    arrays.append(to_array(im, self.size, self.channels)[0])
                sources.append(name)
            except Exception as err:  # PIL raises many exception types on bad input; all mean "skip this one"
                why = type(err).__name__ if isinstance(item, bytes) else (str(err) or type(err).__name__)
                skipped.append((name, f"not a readable image ({why})"))  # bytes: PIL's message shows a BytesIO repr
        if not arrays:
            raise DataError(f"none of the {len(got)} images could be read (first: {skipped[0][0]}: {skipped[0][1]})")
        return Prepared({"pixels": np.stack(arrays)}, sources=sources, skipped=skipped)

    def feeds(self, prepared: Prepared, rows: np.ndarray) -> dict[str, np.ndarray]:
        x = prepared.arrays["pixels"][rows].transpose(0, 3, 1, 2).astype(np.float32)  # (B, C, H, W)
        x *= np.float32(self.prep["scale"])  # as torch: float32 pixels times the scale as float32
        return {"pixels": np.ascontiguousarray((x - self.mean) / self.std)}


# ---------------------------------------------------------------------------------------------- tables
def table_arrays(frame: pd.DataFrame, numeric: list[dict[str, Any]], categorical: list[dict[str, Any]],
                 lookups: list[dict[str, int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Feature columns -> (`num` float32 (N, n_numeric) scaled, `cat` int64 (N, n_categorical) indices): missing,
    non-finite and float32-overflowing numbers get the median; category text (1.0 -> "1") is looked up, 0 for
    missing or unseen. The one implementation: the training task's encoder calls it too."""
    lookups = lookups or [{c: i + 1 for i, c in enumerate(s["categories"])} for s in categorical]
    num = np.zeros((len(frame), len(numeric)), dtype=np.float32)
    for j, spec in enumerate(numeric):
        try:
            v, _ = finite_numbers(frame[spec["name"]])  # inf, 1e300: missing, as in cleaning
        except (TypeError, ValueError) as err:
            raise DataError(f"column {spec['name']!r} cannot be read as numbers ({err})") from None
        v[np.isnan(v)] = spec["median"]
        num[:, j] = (v - spec["mean"]) / spec["std"]
    cat = np.zeros((len(frame), len(categorical)), dtype=np.int64)
    for j, (spec, lookup) in enumerate(zip(categorical, lookups, strict=True)):
        col = category_text(frame[spec["name"]])
        cat[:, j] = [0 if pd.isna(v) else lookup.get(v, 0) for v in col]
    return num, cat


class TablePreprocessor(Preprocessor):
    """Feature columns -> `num` float32 (N, n_numeric) scaled, `cat` int64 (N, n_categorical) indices."""

    data_kind = "table"
    what = "a DataFrame, a list of row dicts or a table file (.csv, .tsv, .jsonl, .parquet)"

    def __init__(self, prep: dict[str, Any], assets: Path) -> None:
        super().__init__(prep, assets)
        _need(prep, "numeric", "categorical")
        if not isinstance(prep["numeric"], list) or not isinstance(prep["categorical"], list):
            raise _bad("numeric", prep["numeric"], "a list of columns (and categorical too)")
        for j, spec in enumerate(prep["numeric"]):
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise _bad(f"numeric[{j}]", spec, "{name, median, mean, std}")
            _numbers(f"numeric[{j}] ({spec['name']}) median/mean", [spec.get("median"), spec.get("mean")], 2)
            _numbers(f"numeric[{j}] ({spec['name']}) std", [spec.get("std")], 1, positive=True)
        for j, spec in enumerate(prep["categorical"]):
            if not (isinstance(spec, dict) and isinstance(spec.get("name"), str) and isinstance(
                    spec.get("categories"), list) and all(isinstance(c, str) for c in spec["categories"])):
                raise _bad(f"categorical[{j}]", spec, "{name, categories: [strings]}")
        self.lookups = [{c: i + 1 for i, c in enumerate(s["categories"])} for s in prep["categorical"]]

    def _items(self, raw: Any) -> pd.DataFrame:
        raw = frame_rows(raw, self.what)
        needed = [c["name"] for c in self.prep["numeric"] + self.prep["categorical"]]
        missing = [c for c in needed if c not in raw.columns]
        if missing:
            raise DataError(f"missing feature columns {missing}; the model needs {needed}")
        return raw

    def prepare(self, raw: Any) -> Prepared:
        num, cat = table_arrays(self._items(raw), self.prep["numeric"], self.prep["categorical"], self.lookups)
        return Prepared({"num": num, "cat": cat})

    def feeds(self, prepared: Prepared, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {"num": prepared.arrays["num"][rows], "cat": prepared.arrays["cat"][rows]}


# ---------------------------------------------------------------------------------------------- text
def truncate(ids: list[int], budget: int, how: str) -> list[int]:
    """Keep `budget` token ids: the head, the tail, or head+tail (a quarter from the start, the rest from the
    end; Sun et al. 2019)."""
    if len(ids) <= budget:
        return ids
    if how == "head":
        return ids[:budget]
    if how == "tail":
        return ids[len(ids) - budget :]
    head = budget // 4
    return ids[:head] + ids[len(ids) - (budget - head) :]


def token_rows(texts: list[str], tokenizer: Any, special_ids: dict[str, int], max_length: int,
               truncation: str) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> ([CLS] body [SEP] ids int32 (N, max_length) padded with `pad`, lengths int32 (N,)); the body is
    tokenized without special tokens and truncated to max_length - 2. The one implementation: the training
    task's encoder calls it too."""
    sp = special_ids
    ids = np.full((len(texts), max_length), sp["pad"], dtype=np.int32)  # (N, max_length)
    lengths = np.zeros(len(texts), dtype=np.int32)
    for start in range(0, len(texts), 1024):
        encs = tokenizer.encode_batch(texts[start : start + 1024], add_special_tokens=False)
        for i, enc in enumerate(encs, start):
            row = [sp["cls"], *truncate(enc.ids, max_length - 2, truncation), sp["sep"]]
            ids[i, : len(row)] = row
            lengths[i] = len(row)
    return ids, lengths


class TextPreprocessor(Preprocessor):
    """Texts -> [CLS] body [SEP] token ids, truncated as trained, padded per batch to its longest text."""

    data_kind = "text"
    what = "a list of strings, a DataFrame with the text column, a table file, or a file or folder of raw emails"

    def __init__(self, prep: dict[str, Any], assets: Path) -> None:
        super().__init__(prep, assets)
        _need(prep, "text_column", "max_length", "truncation", "special_ids", "tokenizer")
        _need(prep["special_ids"], "cls", "sep", "pad")
        if prep.get("email") is not None:
            _need(prep["email"], "headers", "body", "max_chars")
        if not isinstance(prep["max_length"], int) or prep["max_length"] < 3:
            raise _bad("max_length", prep["max_length"], "a whole number of tokens >= 3")
        sp = prep["special_ids"]
        if not all(isinstance(sp[k], int) and sp[k] >= 0 for k in ("cls", "sep", "pad")):
            raise _bad("special_ids", prep["special_ids"], "{cls, sep, pad} token ids")
        if prep["truncation"] not in ("head", "tail", "head+tail"):
            raise ExportError(f"unknown truncation {prep['truncation']!r} in signature.json; re-export the package")
        if Path(str(prep["tokenizer"])).name != prep["tokenizer"]:
            raise ExportError(f"tokenizer {prep['tokenizer']!r} must be a file name in assets/; re-export the package")
        self.tokenizer_path = self.assets / prep["tokenizer"]
        self._tokenizer: Any = None

    @property
    def tokenizer(self) -> Any:
        """The tokenizer, loaded on first use (the `tokenizers` import is only paid by text packages)."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            try:
                tok = Tokenizer.from_file(str(self.tokenizer_path))
            except Exception as err:  # tokenizers raises plain Exception on a bad file
                raise ExportError(f"cannot load {self.tokenizer_path}: {err}; re-export the package") from None
            tok.no_truncation()  # truncation is ours (head/tail/head+tail), applied to ids
            tok.no_padding()
            self._tokenizer = tok
        return self._tokenizer

    def _items(self, raw: Any) -> list[str] | list[Path] | RawEmails:
        return text_items(raw, self.prep["text_column"], self.what)

    def prepare(self, raw: Any) -> Prepared:
        items = self._items(raw)
        files = bool(items) and isinstance(items[0], Path)
        if isinstance(items, RawEmails):
            texts = message_texts(list(items), self.prep.get("email"))
        else:
            texts = file_texts(items, self.prep.get("email")) if files else items  # type: ignore[arg-type]
        ids, lengths = token_rows(texts, self.tokenizer, self.prep["special_ids"], int(self.prep["max_length"]),
                                  self.prep["truncation"])
        sources = [str(f) for f in items] if files else None
        return Prepared({"ids": ids, "lengths": lengths}, sources=sources, texts=texts)

    def feeds(self, prepared: Prepared, rows: np.ndarray) -> dict[str, np.ndarray]:
        lengths = prepared.arrays["lengths"][rows]
        width = int(lengths.max()) if len(rows) else 0  # dynamic padding: to the longest text of this batch
        ids = prepared.arrays["ids"][rows, :width].astype(np.int64)
        mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)  # (B, width)
        return {"input_ids": ids, "attention_mask": mask}

    def order(self, prepared: Prepared) -> np.ndarray:
        return np.argsort(-prepared.arrays["lengths"], kind="stable")


PREPROCESSORS: dict[str, type[Preprocessor]] = {"images": ImagePreprocessor, "table": TablePreprocessor,
                                                "text": TextPreprocessor}


def make_preprocessor(data_kind: str, prep: dict[str, Any], assets: Path) -> Preprocessor:
    """The preprocessor of a package's data kind; an unknown kind means the package is newer than this shipml."""
    if data_kind not in PREPROCESSORS:
        raise ExportError(f"data_kind {data_kind!r} is not one this shipml can run ({sorted(PREPROCESSORS)}); "
                          "upgrade shipml or re-export the package")
    if not isinstance(prep, dict):
        raise ExportError("signature.json preprocessing is not an object; re-export the package")
    return PREPROCESSORS[data_kind](prep, assets)
