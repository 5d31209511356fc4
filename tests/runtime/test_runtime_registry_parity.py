"""For every registered task, the runtime's input path gives the feeds the training side gives, on the same raw
rows, edge rows included (missing values, unseen categories, inf / 1e300, grey / RGBA / 16-bit images, hidden
files and folders, a link loop, empty and markup-only texts, raw emails).

The training side is what a run uses: the data room reads files (`discover_images` + `load_pixels`,
`discover_messages` + `message_texts`), the task's tensor encoders (`encode` + `make_batch`) make the batch —
for tables and texts these call the runtime's `table_arrays` / `token_rows`, so here the reading, batching and
(for images) the normalisation around them are what is compared. The runtime side is `Predictor` built from the
task's spec, the one path `Run.predict`, `Package.predict` and the server take. A task registered without
a case here fails `test_every_registered_task_has_a_case`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from shipml.config import EmailConfig, TransformerConfig
from shipml.data.dataset import CleaningLog, Dataset
from shipml.data.decode import load_pixels
from shipml.data.images import discover_images
from shipml.data.mail_folder import discover_messages, message_texts
from shipml.runtime import Predictor
from shipml.tasks import Task, create_task, list_tasks


@dataclass
class Case:
    task: Task
    raw: Any  # what a user hands to predict
    training: dict[str, np.ndarray]  # the training side's batch for the same rows, in the same order
    email: dict[str, Any] | None = None


def _split(n: int) -> np.ndarray:
    return np.array(["train"] * (n - n // 5) + ["val"] * (n // 10) + ["test"] * (n // 5 - n // 10))


def _batch(task: Task, inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    n = len(next(iter(inputs.values())))
    batch = task.make_batch(inputs, torch.arange(n), train=False, gen=torch.Generator())
    return {k: v.contiguous().numpy() for k, v in batch.items()}


# ---------------------------------------------------------------------------------------------- tables
_TABLE_NEW = pd.DataFrame({
    "x": [None, "7", "junk", 0.5, np.nan, "inf", "-inf", 1e300, -3e39, 2],
    "y": [1.0, np.nan, 3, np.inf, -np.inf, 6, 7, 8, 9, 1e308],
    "colour": [1.0, "1", 2.5, "blue", None, np.int64(3), "red", "", "RED", True],  # unseen: 2.5 blue "" RED True
    "extra": "ignored",
})


def _table_case(name: str, tmp: Path) -> Case:
    rng = np.random.default_rng(0)
    n = 60
    train = pd.DataFrame({"x": rng.normal(size=n), "y": rng.integers(0, 5, size=n).astype(float),
                          "colour": rng.choice(np.array([1, 2, 3, "red"], dtype=object), size=n)})
    train.loc[::7, "x"] = np.nan
    regression = name.endswith("regression")
    train["label"] = rng.normal(size=n) if regression else ["p", "q"] * (n // 2)
    data = Dataset("table", train, "label", ["x", "y", "colour"], ["colour"], _split(n), "fp", CleaningLog(),
                   classes=None if regression else ["p", "q"])
    task = create_task(name).fit(data)
    return Case(task, _TABLE_NEW, _batch(task, task.encode(_TABLE_NEW, None)))


# ---------------------------------------------------------------------------------------------- images
def _odd_images(root: Path, rng: np.random.Generator) -> None:
    """Class folders with files of other sizes, modes and bit depths, nesting, hidden files and folders, link
    loops and a broken file: what a user's image folder looks like."""
    specs = [("a/a_grey.png", "L", (13, 20)), ("a/b_rgb.png", "RGB", (8, 8)), ("a/sub/c_rgba.png", "RGBA", (9, 11)),
             ("b/d_palette.gif", "P", (16, 7)), ("b/e_photo.JPG", "RGB", (30, 17))]
    for name, mode, (w, h) in specs:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 256, size=(h, w, 4), dtype=np.uint8)
        Image.fromarray(arr, "RGBA").convert(mode).save(root / name)
    Image.fromarray(rng.integers(0, 65536, size=(10, 12), dtype=np.uint16)).save(root / "b" / "f_16bit.png")
    (root / "b" / "g_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    for hidden in ("a/.hidden.png", "b/.git/x.png", "__MACOSX/a/b_rgb.png"):
        (root / hidden).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / hidden)
    (root / "a" / "loop").symlink_to(root / "a", target_is_directory=True)  # a folder link back up: walked once
    (root / "b" / "self.png").symlink_to(root / "b" / "self.png")  # a link to itself: skipped


def _image_case(name: str, tmp: Path) -> Case:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(40, 8, 8, 3), dtype=np.uint8)
    frame = pd.DataFrame({"source": [f"{i}.png" for i in range(40)], "label": ["a", "b"] * 20})
    data = Dataset("images", frame, "label", [], [], _split(40), "fp", CleaningLog(), classes=["a", "b"],
                   images=images)
    task = create_task(name).fit(data)
    root = tmp / "images"
    _odd_images(root, rng)
    layout = discover_images(root)  # the data room's walk and decoder, as `load_dataset` runs them
    decoded, kept = load_pixels(layout, (8, 8), 3, CleaningLog())
    assert len(kept) == 6 and not any("hidden" in p or "MACOSX" in p for p in layout.relpaths)
    return Case(task, root, _batch(task, task.encode(None, decoded)))


# ---------------------------------------------------------------------------------------------- text
_EMAIL = (b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\nSubject: =?iso-8859-1?q?Gr=FC=DFe?= und mehr\r\n"
          b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=BB\r\n\r\n--BB\r\n"
          b"Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Hello <b>there</b></p></body></html>\r\n"
          b"--BB--\r\n")


def _text_task(name: str) -> Task:
    texts = [" ".join(str(i) for i in range(k)) for k in range(30)]
    frame = pd.DataFrame({"text": texts, "label": ["a", "b"] * 15})
    data = Dataset("text", frame, "label", ["text"], [], _split(30), "fp", CleaningLog(), classes=["a", "b"])
    return create_task(name, model=TransformerConfig(max_length=16, truncation="head+tail")).fit(data)


def _text_case(name: str, tmp: Path) -> Case:
    task = _text_task(name)
    texts = ["", "<html><body></body></html>", "   ", "Ünïcödé — 🙂 https://x.org/a?b=1", "word " * 50, "ok"]
    frame = pd.DataFrame({"text": [*texts, None]})
    return Case(task, frame, _batch(task, task.encode(frame, None)))


def _row_dict_case(name: str, tmp: Path) -> Case:
    """Row dicts, as a JSON request body carries them: each row's text column."""
    task = _text_task(name)
    texts = ["a JSON row", "", "<p>markup</p>", "Ünïcödé 🙂"]
    rows = [{"text": t, "id": i} for i, t in enumerate(texts)]
    return Case(task, rows, _batch(task, task.encode(pd.DataFrame({"text": texts}), None)))


def _email_case(name: str, tmp: Path) -> Case:
    """A folder of raw emails: the training side is the data room's own walk and parse (discover_messages +
    message_texts, as `load_dataset` runs them), the runtime side is the package's input path."""
    task = _text_task(name)
    email = EmailConfig(headers=["subject", "from"], max_chars=400)
    mails = tmp / "mails"
    raws = {"inbox/1.eml": _EMAIL, "other/2": _EMAIL.replace(b"Hello", b"Bye"), "inbox/3": b"not an email \xff",
            "other/4": b"Subject: only markup\r\nContent-Type: text/html\r\n\r\n<html><body><br></body></html>",
            "other/deep/5": b"Subject: nested\r\n\r\nin a sub-folder"}
    for rel, raw in raws.items():
        (mails / rel).parent.mkdir(parents=True, exist_ok=True)
        (mails / rel).write_bytes(raw)
    (mails / "inbox" / ".DS_Store").write_bytes(b"junk")
    (mails / "__MACOSX" / "inbox").mkdir(parents=True)
    (mails / "__MACOSX" / "inbox" / "1.eml").write_bytes(b"resource fork")
    (mails / "other" / ".git").mkdir()
    (mails / "other" / ".git" / "HEAD").write_bytes(b"ref: refs/heads/main")
    layout = discover_messages(mails)
    frame, _ = message_texts(layout, email)
    assert layout.relpaths == sorted(raws) and frame["error"].isna().all()
    training = task.encode(pd.DataFrame({"text": frame["text"]}), None)
    return Case(task, mails, _batch(task, training), email=email.model_dump(mode="json"))


CASES: dict[str, list[Callable[[str, Path], Case]]] = {
    "tabular-classification": [_table_case],
    "tabular-regression": [_table_case],
    "image-classification": [_image_case],
    "text-classification": [_text_case, _row_dict_case, _email_case],
    "image-generation": [],  # no input rows: (class, n, seed) -> feeds, tested by test_generation_feeds below
}


def test_every_registered_task_has_a_case() -> None:
    assert set(list_tasks()) <= set(CASES), f"add a parity case for {set(list_tasks()) - set(CASES)}"


@pytest.mark.parametrize("name,i", [(n, i) for n in list_tasks() for i in range(len(CASES.get(n, [None])))])
def test_runtime_feeds_equal_training_feeds(tmp_path: Path, name: str, i: int) -> None:
    if name not in CASES:
        pytest.fail(f"no parity case for task {name!r}")
    case = CASES[name][i](name, tmp_path)
    assets = tmp_path / "assets"
    assets.mkdir()
    for fname, content in case.task.files().items():
        (assets / fname).write_bytes(content)
    predictor = Predictor(case.task.spec(case.email), assets, where="test")
    prepared = predictor.prepare(case.raw)
    got = predictor.preprocessor.feeds(prepared, np.arange(len(prepared)))
    assert set(got) == set(case.training)
    for key, ref in case.training.items():
        assert got[key].shape == ref.shape, key
        assert np.isfinite(got[key]).all(), f"{key}: non-finite feeds"
        if np.issubdtype(ref.dtype, np.floating):
            np.testing.assert_allclose(got[key], ref, rtol=0, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(got[key], ref, err_msg=key)


def test_generation_feeds() -> None:
    """A generator's input path: the runtime draws what Run.generate and the judge feed the PyTorch generator
    (`runtime.generate.noise` from the seed, the class index), and refuses to predict."""
    from sklearn.datasets import load_digits

    from shipml.errors import DataError
    from shipml.runtime.generate import ImageGenerator, noise

    d = load_digits()
    images = (d.images * 255 / 16).astype(np.uint8)[..., None]
    frame = pd.DataFrame({"source": [f"{i}.png" for i in range(len(images))], "label": d.target.astype(str)})
    data = Dataset("images", frame, "label", [], [], _split(len(frame)), "x", CleaningLog(),
                   classes=[str(i) for i in range(10)], images=images)
    task = create_task("image-generation").fit(data)
    spec = task.spec()
    feeds = ImageGenerator(spec, where="test").feeds("7", 5, seed=3)
    np.testing.assert_array_equal(feeds["class"], np.full(5, 7))
    np.testing.assert_array_equal(feeds["noise"], noise(3, 5, task.prep["z_dim"]))
    torch.manual_seed(0)
    model = task.build_model().eval()
    with torch.no_grad():  # the feeds are what the network takes
        out = model(torch.from_numpy(feeds["noise"]), torch.from_numpy(feeds["class"]))
    assert out.shape == (5, 1, 8, 8)
    with pytest.raises(DataError, match="shipml generate"):
        Predictor(spec, Path("."), where="test")
