"""Raw inputs -> model feeds, from the JSON in signature["preprocessing"] alone (no torch, no task code).

Each class re-implements what its training task does (shipml/tasks/image.py, tabular.py, text.py and the
decoding in shipml/data/decode.py) so that a package sees exactly the numbers the network was trained on;
tests/runtime compares both sides. `prepare` does the per-row work once (decode, parse, tokenize), `feeds`
cuts one batch out of it, so batching and measuring never redo the expensive part.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from PIL import Image

from shipml.errors import DataError, ExportError

__all__ = ["PREPROCESSORS", "Prepared", "Preprocessor", "category_text", "make_preprocessor"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
MAX_MESSAGE_BYTES = 8 << 20  # as shipml.data.mail_folder: a longer message is read truncated


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


def _walk(folder: Path, keep: Callable[[Path], bool]) -> list[Path]:
    """Files below `folder`, hidden files and folders (.*, __MACOSX) skipped, sorted as Run.predict sorts them."""
    def visible(q: Path) -> bool:
        return not any(part.startswith(".") or part == "__MACOSX" for part in q.relative_to(folder).parts)

    return sorted(q for q in folder.rglob("*") if q.is_file() and visible(q) and keep(q))


def _existing(raw: str | Path, what: str) -> Path:
    p = Path(raw)
    try:
        found = p.exists()
    except OSError:  # e.g. a long text passed where a path was expected: "File name too long"
        found = False
    if not found:
        raise DataError(f"{str(p)[:200]!r} does not exist; give {what}")
    return p


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
def _to_array(im: Image.Image, size: tuple[int, int], channels: int) -> np.ndarray:
    """As shipml.data.decode._to_array: 16-bit grey / 257, convert to L or RGB, bilinear resize to (H, W)."""
    if im.mode.startswith("I;16"):  # PIL's convert would clip at 255
        im = Image.fromarray((np.asarray(im, dtype=np.float32) / 257.0).round().astype(np.uint8), "L")
    target = "L" if channels == 1 else "RGB"
    if im.mode != target:
        im = im.convert(target)
    if im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)  # PIL sizes are (W, H)
    arr = np.asarray(im, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


class ImagePreprocessor(Preprocessor):
    """uint8 (N, H, W, C) pixels -> `pixels` float32 (N, C, H, W) = (pixels * scale - mean) / std."""

    data_kind = "images"
    what = "(N, H, W[, C]) uint8 pixels, a .npz with an 'images' array, an image file or folder, or image paths"

    def __init__(self, prep: dict[str, Any], assets: Path) -> None:
        super().__init__(prep, assets)
        _need(prep, "size", "channels", "scale", "mean", "std")
        if prep.get("layout", "NCHW") != "NCHW":
            raise ExportError(f"image layout {prep['layout']!r} is not supported by this shipml (only NCHW)")
        self.size, self.channels = (int(prep["size"][0]), int(prep["size"][1])), int(prep["channels"])
        self.mean = np.asarray(prep["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
        self.std = np.asarray(prep["std"], dtype=np.float32).reshape(1, -1, 1, 1)

    def _pixels(self, arr: np.ndarray, where: str) -> np.ndarray:
        (h, w), c = self.size, self.channels
        pixels = arr[..., None] if arr.ndim == 3 else arr
        if pixels.ndim != 4 or pixels.shape[1:] != (h, w, c) or pixels.dtype != np.uint8:
            raise DataError(f"{where}: expected uint8 images of shape (N, {h}, {w}, {c}), got {arr.dtype} "
                            f"{arr.shape}; give images of that size, or image files (they are resized)")
        return pixels

    def _items(self, raw: Any) -> np.ndarray | list[Path]:
        """An array of pixels, or the image files to decode."""
        if isinstance(raw, np.ndarray):
            return self._pixels(raw, "the array")
        if isinstance(raw, (list, tuple)) and all(isinstance(p, (str, Path)) for p in raw):
            return [Path(p) for p in raw]
        if not isinstance(raw, (str, Path)):
            raise DataError(f"cannot read images from a {type(raw).__name__}; give {self.what}")
        p = _existing(raw, self.what)
        if p.is_file() and p.suffix.lower() == ".npz":
            try:
                with np.load(p, allow_pickle=False) as npz:
                    if "images" not in npz.files:
                        raise DataError(f"{p} holds {npz.files}, no 'images' array; save it with np.savez(images=...)")
                    return self._pixels(npz["images"], str(p))
            except (OSError, ValueError) as err:
                raise DataError(f"{p} is not a readable .npz file ({err})") from None
        paths = _walk(p, lambda q: q.suffix.lower() in IMAGE_SUFFIXES) if p.is_dir() else [p]
        if not paths:
            raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {p}")
        return paths

    def prepare(self, raw: Any) -> Prepared:
        got = self._items(raw)
        if isinstance(got, np.ndarray):
            return Prepared({"pixels": got}, sources=[str(i) for i in range(len(got))])
        if not got:  # an empty list of paths: no rows, as for an empty table or list of texts
            (h, w), c = self.size, self.channels
            return Prepared({"pixels": np.zeros((0, h, w, c), dtype=np.uint8)}, sources=[])
        arrays, sources, skipped = [], [], []
        for path in got:
            try:
                with Image.open(path) as im:
                    arrays.append(_to_array(im, self.size, self.channels))
                sources.append(str(path))
            except Exception as err:  # PIL raises many exception types on bad input; all mean "skip this one"
                skipped.append((str(path), f"not a readable image ({str(err) or type(err).__name__})"))
        if not arrays:
            raise DataError(f"none of the {len(got)} images could be read (first: {skipped[0][0]}: {skipped[0][1]})")
        return Prepared({"pixels": np.stack(arrays)}, sources=sources, skipped=skipped)

    def feeds(self, prepared: Prepared, rows: np.ndarray) -> dict[str, np.ndarray]:
        x = prepared.arrays["pixels"][rows].transpose(0, 3, 1, 2).astype(np.float32)  # (B, C, H, W)
        x *= np.float32(self.prep["scale"])  # as torch: float32 pixels times the scale as float32
        return {"pixels": np.ascontiguousarray((x - self.mean) / self.std)}


# ---------------------------------------------------------------------------------------------- tables
def _text(v: Any) -> str | None:
    """As shipml.data.clean._text: a value as category text; missing -> None, 1.0 -> "1", True -> "True"."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return str(int(v)) if float(v).is_integer() else repr(float(v))
    return str(v)


def category_text(values: pd.Series) -> pd.Series:
    """As shipml.data.clean.category_text: categorical values as strings (object dtype, missing as NaN)."""
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):  # already text
        return pd.Series(values.to_numpy(dtype=object, na_value=np.nan), index=values.index, dtype=object)
    out = np.empty(len(values), dtype=object)
    seen: dict[tuple[type, Any], str | None] = {}  # keyed by type too: 1, 1.0 and True are equal keys
    for i, v in enumerate(values.to_numpy(dtype=object)):
        try:
            key = (type(v), v)
            out[i] = seen[key] if key in seen else seen.setdefault(key, _text(v))
        except TypeError:  # unhashable, e.g. a list from JSONL
            out[i] = _text(v)
    out[pd.isna(out)] = np.nan
    return pd.Series(out, index=values.index, dtype=object)


class TablePreprocessor(Preprocessor):
    """Feature columns -> `num` float32 (N, n_numeric) scaled, `cat` int64 (N, n_categorical) indices."""

    data_kind = "table"
    what = "a DataFrame, a list of row dicts or a table file (.csv, .tsv, .jsonl, .parquet)"

    def __init__(self, prep: dict[str, Any], assets: Path) -> None:
        super().__init__(prep, assets)
        _need(prep, "numeric", "categorical")
        self.lookups = [{c: i + 1 for i, c in enumerate(s["categories"])} for s in prep["categorical"]]

    def _items(self, raw: Any) -> pd.DataFrame:
        if isinstance(raw, (list, tuple)) and all(isinstance(r, dict) for r in raw):
            raw = pd.DataFrame(list(raw))
        elif isinstance(raw, (str, Path)):
            from shipml.data.sources import read_table

            raw = read_table(_existing(raw, self.what))
        if not isinstance(raw, pd.DataFrame):
            raise DataError(f"cannot read table rows from a {type(raw).__name__}; give {self.what}")
        needed = [c["name"] for c in self.prep["numeric"] + self.prep["categorical"]]
        missing = [c for c in needed if c not in raw.columns]
        if missing:
            raise DataError(f"missing feature columns {missing}; the model needs {needed}")
        return raw

    def prepare(self, raw: Any) -> Prepared:
        frame = self._items(raw)
        num = np.zeros((len(frame), len(self.prep["numeric"])), dtype=np.float32)
        for j, spec in enumerate(self.prep["numeric"]):
            try:
                v = pd.to_numeric(frame[spec["name"]], errors="coerce").astype(np.float64).fillna(spec["median"])
            except (TypeError, ValueError) as err:
                raise DataError(f"column {spec['name']!r} cannot be read as numbers ({err})") from None
            num[:, j] = (v.to_numpy() - spec["mean"]) / spec["std"]
        cat = np.zeros((len(frame), len(self.prep["categorical"])), dtype=np.int64)
        for j, (spec, lookup) in enumerate(zip(self.prep["categorical"], self.lookups, strict=True)):
            col = category_text(frame[spec["name"]])  # the text form training saw (1.0 -> "1")
            cat[:, j] = [0 if pd.isna(v) else lookup.get(v, 0) for v in col]
        return Prepared({"num": num, "cat": cat})

    def feeds(self, prepared: Prepared, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {"num": prepared.arrays["num"][rows], "cat": prepared.arrays["cat"][rows]}


# ---------------------------------------------------------------------------------------------- text
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

    def _file_text(self, path: Path) -> str:
        """One file's text: a raw email parsed as in training when the package says so, else UTF-8 text."""
        em = self.prep.get("email")
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_MESSAGE_BYTES if em is not None else -1)
        except OSError as err:
            raise DataError(f"cannot read {path}: {err.strerror or err}") from None
        if em is None:
            return raw.decode("utf-8", errors="replace")
        from shipml.data.email import message_text

        return message_text(raw, headers=em["headers"], body=em["body"], max_chars=em["max_chars"])

    def _items(self, raw: Any) -> list[str] | list[Path]:
        """The texts, or the files to read them from (a list of Path objects is files, of anything else texts)."""
        if isinstance(raw, (list, tuple)):
            if raw and all(isinstance(t, Path) for t in raw):
                return list(raw)
            return ["" if t is None or (isinstance(t, float) and math.isnan(t)) else str(t) for t in raw]
        if isinstance(raw, (str, Path)):
            from shipml.data.sources import read_table, table_format

            p = _existing(raw, self.what)
            if not (p.is_file() and table_format(p) is not None):
                files = _walk(p, lambda q: True) if p.is_dir() else [p]
                if not files:
                    raise DataError(f"no files found in {p}")
                return files
            raw = read_table(p)
        col = self.prep["text_column"]
        if not isinstance(raw, pd.DataFrame):
            raise DataError(f"cannot read texts from a {type(raw).__name__}; give {self.what}")
        if col not in raw.columns:
            raise DataError(f"missing text column {col!r}; the model reads {col!r}")
        return ["" if pd.isna(t) else str(t) for t in raw[col]]

    def _truncate(self, ids: list[int], budget: int) -> list[int]:
        if len(ids) <= budget:
            return ids
        if self.prep["truncation"] == "head":
            return ids[:budget]
        if self.prep["truncation"] == "tail":
            return ids[len(ids) - budget :]
        head = budget // 4  # head+tail: a quarter from the start, the rest from the end
        return ids[:head] + ids[len(ids) - (budget - head) :]

    def prepare(self, raw: Any) -> Prepared:
        items = self._items(raw)
        files = bool(items) and isinstance(items[0], Path)
        texts = [self._file_text(t) if isinstance(t, Path) else t for t in items]
        sp, max_length = self.prep["special_ids"], int(self.prep["max_length"])
        ids = np.full((len(texts), max_length), sp["pad"], dtype=np.int32)  # (N, max_length)
        lengths = np.zeros(len(texts), dtype=np.int32)
        for start in range(0, len(texts), 1024):
            encs = self.tokenizer.encode_batch(texts[start : start + 1024], add_special_tokens=False)
            for i, enc in enumerate(encs, start):
                row = [sp["cls"], *self._truncate(enc.ids, max_length - 2), sp["sep"]]
                ids[i, : len(row)] = row
                lengths[i] = len(row)
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
