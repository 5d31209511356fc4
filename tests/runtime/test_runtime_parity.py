"""The runtime's preprocessing equals the training side's, row for row (category text and number conversion
have one implementation, shipml.core.values, so they are not compared here): image batches against
ImageClassification (arrays, and files of other sizes, modes and bit depths against the data room's decoder), table
encoding against TabularClassification (missing values, unseen and float-looking categories), token batches
against TextClassification in every truncation mode, and raw emails against message_text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from test_runtime_package import text_package, text_prep, write_package

from shipml.config import TransformerConfig
from shipml.data import message_text
from shipml.data.dataset import CleaningLog, Dataset
from shipml.data.decode import load_pixels
from shipml.data.images import discover_images
from shipml.runtime import Package
from shipml.runtime.preprocess import make_preprocessor
from shipml.tasks import create_task

IMAGE_KEYS = ("size", "channels", "scale", "mean", "std", "layout")


def _split(n: int) -> np.ndarray:
    return np.array(["train"] * (n - n // 5) + ["val"] * (n // 10) + ["test"] * (n // 5 - n // 10))


def _image_task(images: np.ndarray) -> object:
    frame = pd.DataFrame({"source": [f"{i}.png" for i in range(len(images))], "label": ["a", "b"] * (len(images) // 2)})
    data = Dataset("images", frame, "label", [], [], _split(len(frame)), "x", CleaningLog(), classes=["a", "b"],
                   images=images)
    return create_task("image-classification").fit(data)


def _training_batch(task: object, images: np.ndarray, idx: np.ndarray) -> np.ndarray:
    inputs = task.encode(None, images)  # type: ignore[attr-defined]
    batch = task.make_batch(inputs, torch.as_tensor(idx), train=False, gen=torch.Generator())  # type: ignore[attr-defined]
    return batch["pixels"].contiguous().numpy()


def _write_odd_images(folder: Path, rng: np.random.Generator) -> list[Path]:
    """Files of other sizes, modes and bit depths than the model's, and one that is not an image."""
    folder.mkdir(parents=True)
    specs = [("a_grey.png", "L", (13, 20)), ("b_rgb.png", "RGB", (8, 8)), ("c_rgba.png", "RGBA", (9, 11)),
             ("d_palette.gif", "P", (16, 7)), ("e_photo.jpg", "RGB", (30, 17)), ("f_bw.bmp", "1", (5, 6))]
    paths = []
    for name, mode, (w, h) in specs:
        chans = {"L": 1, "P": 1, "1": 1, "RGB": 3, "RGBA": 4}[mode]
        arr = rng.integers(0, 256, size=(h, w, chans), dtype=np.uint8)
        im = Image.fromarray(arr[..., 0], "L") if chans == 1 else Image.fromarray(arr, "RGBA" if chans == 4 else "RGB")
        im.convert(mode).save(folder / name)
        paths.append(folder / name)
    for name, (w, h) in (("g_16bit.png", (12, 10)), ("h_16bit_same.png", (8, 8))):
        Image.fromarray(rng.integers(0, 65536, size=(h, w), dtype=np.uint16)).save(folder / name)
        assert Image.open(folder / name).mode == "I;16"
        paths.append(folder / name)
    (folder / "i_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    paths.append(folder / "i_broken.png")
    return paths


@pytest.mark.parametrize("channels", [1, 3])
def test_image_preprocessing_equals_training(tmp_path: Path, channels: int) -> None:
    rng = np.random.default_rng(channels)
    if channels == 1:
        images = (load_digits().images[:120] * 255 / 16).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    else:
        images = rng.integers(0, 256, size=(60, 8, 8, 3), dtype=np.uint8)
    task = _image_task(images)
    prep = {k: task.prep[k] for k in IMAGE_KEYS}  # type: ignore[attr-defined]
    pre = make_preprocessor("images", prep, tmp_path)

    idx = rng.permutation(len(images))[:40]
    got = pre.feeds(pre.prepare(images), idx)["pixels"]
    assert got.dtype == np.float32 and got.shape == (40, channels, 8, 8) and got.flags.c_contiguous
    np.testing.assert_array_equal(got, _training_batch(task, images, idx))  # bit for bit

    paths = _write_odd_images(tmp_path / "root" / "files", rng)
    log = CleaningLog()
    decoded, kept = load_pixels(discover_images(tmp_path / "root"), (8, 8), channels, log)  # how training decodes
    prepared = pre.prepare(paths)
    np.testing.assert_array_equal(prepared.arrays["pixels"], decoded)  # identical uint8 pixels
    assert prepared.sources == [str(paths[i]) for i in kept] and len(kept) == len(paths) - 1
    assert [Path(s).name for s, _ in prepared.skipped] == [Path(i["item"]).name for i in log.skipped]
    assert [s for s, _ in prepared.skipped] == [str(paths[-1])]
    rows = np.arange(len(decoded))
    np.testing.assert_array_equal(pre.feeds(prepared, rows)["pixels"], _training_batch(task, decoded, rows))
    # a folder reads the same files in the same (sorted) order
    np.testing.assert_array_equal(pre.prepare(tmp_path / "root" / "files").arrays["pixels"], decoded)


def test_table_preprocessing_equals_training(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 80
    train = pd.DataFrame({
        "x": rng.normal(size=n).round(3).astype(object),
        "y": rng.integers(0, 5, size=n).astype(float),
        "colour": rng.choice(np.array([1, 2, 3, "red"], dtype=object), size=n),
        "flag": rng.choice([True, False], size=n),
        "label": ["p", "q"] * (n // 2),
    })
    train.loc[::7, "x"] = None
    train.loc[::9, "x"] = "n/a"
    train.loc[::11, "colour"] = np.nan
    feats = ["x", "y", "colour", "flag"]
    data = Dataset("table", train, "label", feats, ["colour", "flag"], _split(n), "x", CleaningLog(),
                   classes=["p", "q"])
    task = create_task("tabular-classification").fit(data)
    assert sorted(task.prep["categorical"][0]["categories"]) == ["1", "2", "3", "red"]
    prep = {"numeric": task.prep["numeric"], "categorical": task.prep["categorical"]}

    new = pd.DataFrame({
        "x": [None, "7", "junk", 0.5, np.nan, 2, "1e3"],
        "y": [1.0, np.nan, 3, 4, 5, 6, 7],
        "colour": [1.0, "1", 2.5, "blue", None, np.int64(3), "red"],  # 1.0 -> "1"; 2.5 and blue unseen
        "flag": [True, False, None, "True", 1, 0.0, np.nan],
        "extra": "ignored",
    })
    ref = task.encode(new, None)
    prepared = make_preprocessor("table", prep, tmp_path).prepare(new)
    np.testing.assert_array_equal(prepared.arrays["num"], ref["num"].numpy())
    np.testing.assert_array_equal(prepared.arrays["cat"], ref["cat"].numpy())
    cats = task.prep["categorical"][0]["categories"]
    index = {c: i + 1 for i, c in enumerate(cats)}
    assert prepared.arrays["cat"][:, 0].tolist() == [index["1"], index["1"], 0, 0, 0, index["3"], index["red"]]


@pytest.mark.parametrize("truncation", ["head", "tail", "head+tail"])
def test_text_batches_equal_training(tmp_path: Path, truncation: str) -> None:
    rng = np.random.default_rng(1)
    texts = [" ".join(str(i) for i in range(int(k))) for k in rng.integers(0, 60, size=30)]
    texts += ["", "Ünïcödé text — with émojis 🙂 and URLs https://x.org/a?b=1", "word " * 100]
    frame = pd.DataFrame({"text": [*texts, None], "label": ["a", "b"] * 17})
    data = Dataset("text", frame, "label", ["text"], [], _split(len(frame)), "fp", CleaningLog(), classes=["a", "b"])
    task = create_task("text-classification", model=TransformerConfig(max_length=24, truncation=truncation)).fit(data)
    prep = {k: task.prep[k] for k in ("text_column", "max_length", "truncation", "special_ids")}
    prep["tokenizer"] = "tokenizer.json"
    from test_runtime_package import text_model

    model, _ = text_model(30522, 4, 2)
    path = write_package(tmp_path / "pkg", model, data_kind="text", preprocessing=prep, classes=["a", "b"],
                         inputs=[{"name": n, "dtype": "int64", "shape": ["batch", "sequence"]}
                                 for n in ("input_ids", "attention_mask")],
                         assets={"tokenizer.json": task.files()["tokenizer.json"]})
    pkg = Package.open(path)
    inputs = task.encode(frame, None)
    prepared = pkg.prepare(frame)
    np.testing.assert_array_equal(prepared.lengths, inputs["lengths"].numpy())
    assert prepared.lengths.max() == 24  # some texts were truncated
    longest_first = pkg.preprocessor.order(prepared)
    for idx in (np.arange(len(frame)), rng.permutation(len(frame))[:7], np.array([5]), longest_first[:8]):
        ref = task.make_batch(inputs, torch.as_tensor(idx), train=False, gen=torch.Generator())
        got = pkg.preprocessor.feeds(prepared, idx)
        for name in ("input_ids", "attention_mask"):
            assert got[name].dtype == np.int64
            np.testing.assert_array_equal(got[name], ref[name].numpy())
    np.testing.assert_array_equal(pkg.preprocessor.order(prepared), task.inference_order(inputs, np.arange(len(frame))))


_EMAIL = (b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\nSubject: =?iso-8859-1?q?Gr=FC=DFe?= und mehr\r\n"
          b"To: x@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=BB\r\n\r\n"
          b"--BB\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Hello <b>there</b></p>"
          b"<p>second &amp; last</p></body></html>\r\n--BB--\r\n")


def test_raw_emails_read_as_in_training(tmp_path: Path) -> None:
    email = {"headers": ["subject", "from"], "body": True, "max_chars": 300}
    pkg = Package.open(text_package(tmp_path / "pkg", text_prep(email=email))[0])
    mails = tmp_path / "mails"
    (mails / "inbox").mkdir(parents=True)
    raws = {"inbox/1.eml": _EMAIL, "2": _EMAIL.replace(b"Hello", b"Bye"), "inbox/3": b"not an email at all \xff"}
    for name, raw in raws.items():
        (mails / name).write_bytes(raw)
    (mails / ".DS_Store").write_bytes(b"junk")
    prepared = pkg.prepare(mails)
    order = ["2", "inbox/1.eml", "inbox/3"]
    assert prepared.sources == [str(mails / n) for n in order]
    expected = [message_text(raws[n], headers=email["headers"], body=True, max_chars=300) for n in order]
    assert prepared.texts == expected and "Subject: Grüße und mehr" in expected[1]
    from_list = pkg.prepare(expected)
    for key in ("ids", "lengths"):
        np.testing.assert_array_equal(prepared.arrays[key], from_list.arrays[key])
    one = pkg.predict(mails / "inbox" / "1.eml")
    assert one["source"].tolist() == [str(mails / "inbox" / "1.eml")]

    plain = Package.open(text_package(tmp_path / "plain")[0])  # no email settings: files are UTF-8 text
    assert plain.prepare(mails / "inbox" / "3").texts == [raws["inbox/3"].decode("utf-8", errors="replace")]
