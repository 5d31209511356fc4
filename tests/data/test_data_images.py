"""Image folders: layouts, decoding, the decode cache, unreadable files, mnist5k end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import shipml.data.decode as decode_mod
from shipml.config import DataConfig, SplitConfig
from shipml.core.images import decode_file
from shipml.data import cache_dir, load_dataset
from shipml.errors import DataError


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache per test, so nothing is read from (or left in) ~/.cache/shipml."""
    path = tmp_path / "cache"
    monkeypatch.setenv("SHIPML_CACHE", str(path))
    return path


def png(path: Path, seed: int, size: tuple[int, int] = (8, 8), mode: str = "L") -> Path:
    """A distinct random image (distinct, so duplicate removal leaves it alone). size is (H, W)."""
    rng = np.random.default_rng(seed)
    shape = size if mode == "L" else (*size, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def class_folder(root: Path, classes: dict[str, int], start: int = 0) -> Path:
    seed = start
    for name, n in classes.items():
        for i in range(n):
            png(root / name / f"{i:03d}.png", seed)
            seed += 1
    return root


@pytest.mark.parametrize("source", ["small_data", "shared_data"])
def test_mnist5k_loads_stratified_and_second_load_hits_the_cache(
    source: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mnist400.tar.gz from tests/fixtures (40 per digit) everywhere; mnist5k.tar.gz (500) where ../shared is."""
    name, per_digit = ("mnist400", 40) if source == "small_data" else ("mnist5k", 500)
    cfg = DataConfig(path=str(request.getfixturevalue(source) / f"{name}.tar.gz"))
    ds = load_dataset(cfg, seed=0, task_kind="classification")
    assert ds.kind == "images" and ds.images is not None
    assert ds.images.shape == (10 * per_digit, 28, 28, 1) and ds.images.dtype == np.uint8
    assert ds.classes == [str(d) for d in range(10)]
    train, held = per_digit * 8 // 10, per_digit // 10
    splits = {s: int((ds.split == s).sum()) for s in ("train", "val", "test")}
    assert splits == {"train": 10 * train, "val": 10 * held, "test": 10 * held}
    for label in ds.classes:  # stratified: every digit 80/10/10 (400/50/50 of mnist5k)
        rows = ds.split[ds.frame["label"].to_numpy() == label]
        assert (rows == "train").sum() == train and (rows == "val").sum() == held and (rows == "test").sum() == held
    assert ds.frame["source"][0].startswith(f"{name}/") and not ds.log.skipped
    assert len(list((cache_dir() / "images").glob("*.npz"))) == 1

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(decode_mod, "_decode_all", no_decoding)
    again = load_dataset(cfg, seed=0, task_kind="classification")
    assert any("decode cache" in a for a in again.log.actions)
    assert any("reused the unpacked copy" in a for a in again.log.actions)
    assert again.images is not None and np.array_equal(again.images, ds.images)
    assert again.fingerprint == ds.fingerprint


def test_cache_file_is_plain_npz(tmp_path: Path) -> None:
    load_dataset(
        DataConfig(path=str(class_folder(tmp_path / "pics", {"a": 4, "b": 4}))), seed=0, task_kind="classification"
    )
    (entry,) = (cache_dir() / "images").glob("*.npz")
    with np.load(entry, allow_pickle=False) as npz:  # no pickles in the cache
        assert npz["pixels"].shape == (8, 8, 8, 1)
        assert "a/000.png" in str(npz["meta"])


def test_train_test_folders_fix_the_split_and_val_is_carved_from_train(tmp_path: Path) -> None:
    root = tmp_path / "wrapped" / "ds"  # a single wrapping folder is looked through
    class_folder(root / "train", {"cat": 18, "dog": 18})
    class_folder(root / "test", {"cat": 5, "dog": 5}, start=100)
    ds = load_dataset(DataConfig(path=str(tmp_path / "wrapped")), seed=1, task_kind="classification")
    sources = ds.frame["source"].to_numpy()
    test_rows = ds.split == "test"
    assert test_rows.sum() == 10 and all(s.startswith("ds/test/") for s in sources[test_rows])
    assert all(s.startswith("ds/train/") for s in sources[~test_rows])
    assert (ds.split == "val").sum() == 4  # 36 * 0.1 / (0.8 + 0.1), stratified: 2 per class
    assert set(ds.frame["label"][ds.split == "val"]) == {"cat", "dog"}


def test_unreadable_images_are_skipped_and_listed(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "pics", {"a": 5, "b": 5})
    good = (root / "a" / "000.png").read_bytes()
    (root / "a" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "b" / "notes.png").write_text("this is not an image")
    (root / "b" / ".hidden.png").write_text("ignored: hidden")
    (root / "__MACOSX" / "a").mkdir(parents=True)
    (root / "__MACOSX" / "a" / "._000.png").write_bytes(b"\0\0")
    (root / "a" / "readme.txt").write_text("not an image suffix: ignored")
    ds = load_dataset(DataConfig(path=str(root)), seed=0, task_kind="classification")
    assert len(ds.frame) == 10 and ds.classes == ["a", "b"]
    skipped = {s["item"]: s["reason"] for s in ds.log.skipped}
    assert set(skipped) == {"a/truncated.png", "b/notes.png"}
    assert all("not a readable image" in r for r in skipped.values())
    assert any("skipped 2 unreadable" in w for w in ds.log.warnings)


def test_sizes_and_channels(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "pics", {"a": 4, "b": 4})
    png(root / "a" / "big.png", 50, size=(10, 12))
    ds = load_dataset(DataConfig(path=str(root)), seed=0, task_kind="classification")
    assert ds.images is not None and ds.images.shape == (9, 8, 8, 1)  # the most common size, grey
    assert any("resized 1 images" in a for a in ds.log.actions)

    png(root / "b" / "colour.png", 51, mode="RGB")
    rgb = load_dataset(DataConfig(path=str(root)), seed=0, task_kind="classification")
    assert rgb.images is not None and rgb.images.shape == (10, 8, 8, 3)  # one colour image: all RGB
    grey = load_dataset(DataConfig(path=str(root), channels=1, image_size=(6, 5)), seed=0, task_kind="classification")
    assert grey.images is not None and grey.images.shape == (10, 6, 5, 1)


def test_16_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    deep = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    pixels, _ = decode_file(tmp_path / "deep.png", (8, 8), 1)  # the decoder training and prediction share
    pixels = pixels[None]
    assert pixels[0, 0, 0, 0] == 0 and pixels[0, -1, -1, 0] == 255 and 120 < pixels[0, 4, 0, 0] < 135


def test_folders_without_images_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir()
    with pytest.raises(DataError, match=r"no images found under .*root/<class>/\*\.png"):
        load_dataset(DataConfig(path=str(tmp_path / "empty")), seed=0, task_kind="classification", kind="images")
    with pytest.raises(DataError, match="no images either"):
        load_dataset(DataConfig(path=str(tmp_path / "empty")), seed=0, task_kind="classification")
    (tmp_path / "bad" / "a").mkdir(parents=True)
    (tmp_path / "bad" / "a" / "x.png").write_text("nope")
    with pytest.raises(DataError, match="none of the 1 image files"):
        load_dataset(DataConfig(path=str(tmp_path / "bad")), seed=0, task_kind="classification")
    with pytest.raises(DataError, match="holds images but no table"):
        load_dataset(DataConfig(path=str(tmp_path / "bad")), seed=0, task_kind="classification", kind="table")
    with pytest.raises(DataError, match="classification"):
        load_dataset(
            DataConfig(path=str(class_folder(tmp_path / "ok", {"a": 3, "b": 3}))), seed=0, task_kind="regression"
        )


def test_duplicate_images_and_leakage_across_split_folders(tmp_path: Path) -> None:
    root = tmp_path / "pics"
    class_folder(root / "train", {"a": 9, "b": 9})
    class_folder(root / "test", {"a": 3, "b": 3}, start=100)
    # an exact copy inside train (same label) and a test image that is also a training image
    (root / "train" / "a" / "copy.png").write_bytes((root / "train" / "a" / "000.png").read_bytes())
    (root / "test" / "b" / "leak.png").write_bytes((root / "train" / "a" / "001.png").read_bytes())
    (root / "test" / "a" / "dup.png").write_bytes((root / "train" / "a" / "002.png").read_bytes())
    no_val = SplitConfig(train=0.9, val=0.0, test=0.1)  # so every train/ image stays in train
    ds = load_dataset(DataConfig(path=str(root), split=no_val), seed=0, task_kind="classification")
    sources = set(ds.frame["source"])
    assert "train/a/copy.png" not in sources or "train/a/000.png" not in sources
    assert "train/a/002.png" in sources and "test/a/dup.png" not in sources  # the training copy is kept
    assert "test/b/leak.png" not in sources  # same pixels as a training image, other label: leakage
    assert any("removed 2 exact duplicate images" in a for a in ds.log.actions)
    assert any("leakage" in w for w in ds.log.warnings)
    assert any("identical content with a different label" in w for w in ds.log.warnings)


def test_split_fractions_from_config(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "pics", {"a": 10, "b": 10})
    ds = load_dataset(
        DataConfig(path=str(root), split=SplitConfig(train=0.5, val=0.0, test=0.5)), seed=0, task_kind="classification"
    )
    assert (ds.split == "train").sum() == 10 and (ds.split == "test").sum() == 10 and "val" not in set(ds.split)
