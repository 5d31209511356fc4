"""What a server hands the runtime from a client: image files' bytes (`EncodedImages`) are decoded like image
files, raw messages (`RawEmails`) are parsed like email files, and neither is ever read as a path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_runtime_package import image_package, text_package, text_prep

from shipml.errors import DataError
from shipml.runtime import EncodedImages, Package, RawEmails

EMAIL = {"headers": ["subject"], "body": True, "max_chars": 2000}


def test_encoded_images_equal_the_same_files(tmp_path: Path) -> None:
    pkg = Package.open(image_package(tmp_path / "img")[0])
    blobs = []
    for i, colour in enumerate([(250, 0, 0), (0, 90, 200)]):
        Image.new("RGB", (10, 12), colour).save(tmp_path / f"{i}.png")
        blobs.append((tmp_path / f"{i}.png").read_bytes())
    from_files = pkg.predict_proba([tmp_path / "0.png", tmp_path / "1.png"])
    np.testing.assert_array_equal(pkg.predict_proba(EncodedImages(blobs)), from_files)
    prepared = pkg.prepare(EncodedImages([blobs[0], b"not an image", str(tmp_path / "0.png").encode()]))
    assert len(prepared) == 1 and [s for s, _ in prepared.skipped] == ["image 1", "image 2"]  # a path is just bytes


def test_raw_emails_equal_the_same_files(tmp_path: Path) -> None:
    pkg = Package.open(text_package(tmp_path / "txt", text_prep(email=EMAIL))[0])
    messages = [b"Subject: hello\n\nlunch at one?",
                b"Subject: =?utf-8?q?WIN_=E2=82=AC?=\nContent-Type: text/html\n\n<b>now"]
    for i, m in enumerate(messages):
        (tmp_path / f"m{i}").write_bytes(m)
    np.testing.assert_array_equal(pkg.predict_proba(RawEmails(messages)),
                                  pkg.predict_proba([tmp_path / "m0", tmp_path / "m1"]))
    assert pkg.prepare(RawEmails([str(tmp_path / "m0").encode()])).texts == [str(tmp_path / "m0")]  # not opened
    assert len(pkg.prepare(RawEmails([]))) == 0


def test_unreadable_image_bytes_are_named_by_position(tmp_path: Path) -> None:
    pkg = Package.open(image_package(tmp_path / "img")[0])
    with pytest.raises(DataError, match=r"first: image 0: not a readable image \(UnidentifiedImageError\)") as err:
        pkg.prepare(EncodedImages([b"x"]))
    assert "BytesIO" not in str(err.value)
