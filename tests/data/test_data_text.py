"""Text data: load_dataset(kind="text") from tables and email folders, and infer_data on both."""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipml.config import DataConfig, EmailConfig
from shipml.data import Dataset, infer_data, load_dataset
from shipml.errors import DataError

LONG = "an example sentence about the weather, long enough to look like free text {}"


def load_text(path: Path | str, **fields: object) -> Dataset:
    return load_dataset(DataConfig(path=str(path), **fields), seed=0, task_kind="classification", kind="text")


@pytest.fixture(scope="module")
def mail_root(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/{ham,spam}/<part>/<message>: the 30 real messages per label of tests/fixtures, plus what must be
    ignored or skipped."""
    root = tmp_path_factory.mktemp("mail") / "root"
    for label, part in (("ham", "easy_ham"), ("spam", "spam")):
        folder = root / label / part
        folder.mkdir(parents=True)
        for message in sorted((small_data / "spamassassin" / label).iterdir()):
            shutil.copyfile(message, folder / message.name)
        (folder / "cmds").write_text("mv 00001 00002\n")  # SpamAssassin's build commands: not a message
    (root / "spam" / "spam" / "99999.markup").write_bytes(b"Content-Type: text/html\n\n<html><img src=x></html>\n")
    (root / "spam" / "spam" / "99998.junk").write_bytes(bytes(range(9)) * 30)
    (root / "ham" / "easy_ham" / ".DS_Store").write_bytes(b"\0\1")
    (root / "ham" / "__MACOSX").mkdir()
    (root / "ham" / "__MACOSX" / "._x").write_bytes(b"\0")
    (root / "ham" / "easy_ham" / "broken").symlink_to(root / "nowhere")
    os.mkfifo(root / "ham" / "easy_ham" / "pipe")  # reading it would block forever
    (root / "MANIFEST.json").write_text("{}")
    return root


# ----------------------------------------------------------------------------------------------- tables


def test_csv_text_column(tmp_path: Path) -> None:
    texts: list[object] = [f"  Message {i}: Hello World  " for i in range(40)]
    texts[3], texts[4], texts[5] = None, "   \n ", 12345  # missing, blank, a number (becomes "12345")
    texts[6] = texts[8]  # exact duplicate, same label
    texts[7] = texts[10]  # duplicate text, other label: warned, kept
    frame = pd.DataFrame({"text": pd.Series(texts, dtype=object), "label": ["spam", "ham"] * 20, "other": range(40)})
    frame.to_csv(tmp_path / "t.csv", index=False)
    ds = load_text(tmp_path / "t.csv")
    assert (ds.kind, ds.features, ds.categorical, ds.target) == ("text", ["text"], [], "label")
    assert list(ds.frame.columns) == ["text", "label"] and ds.classes == ["ham", "spam"]
    assert len(ds.frame) == 37 and "12345" in set(ds.frame["text"])
    assert ds.frame["text"][0] == texts[0]  # kept as written: no stripping, no lowercasing
    assert ds.log.skipped == [{"item": "row 4", "reason": "empty text"}, {"item": "row 5", "reason": "empty text"}]
    log = " | ".join(ds.log.actions + ds.log.warnings)
    assert "dropped 2 rows with empty text" in log and "removed 1 exact duplicate texts" in log
    assert "2 texts share identical content with a different label" in log
    assert set(ds.split) == {"train", "val", "test"}
    again = load_text(tmp_path / "t.csv")
    assert again.fingerprint == ds.fingerprint and len(ds.fingerprint) == 64
    frame.loc[0, "text"] = "changed"
    frame.to_csv(tmp_path / "t.csv", index=False)
    assert load_text(tmp_path / "t.csv").fingerprint != ds.fingerprint


def test_jsonl_with_another_text_column_and_split_column_leakage(tmp_path: Path) -> None:
    rows = [{"body": LONG.format(i), "y": "ab"[i % 2], "part": "train"} for i in range(30)]
    rows += [{"body": LONG.format(i), "y": "ab"[i % 2], "part": "test"} for i in range(10, 16)]  # copies of train
    rows += [{"body": f"fresh {i}", "y": "ab"[i % 2], "part": "test"} for i in range(6)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_text(tmp_path / "d.jsonl", text_column="body", target="y", split_column="part", dedupe=False)
    assert ds.features == ["body"] and (ds.split == "test").sum() == 6
    assert any("removed 6 test and 0 val texts identical to a training row (leakage)" in w for w in ds.log.warnings)


def test_missing_text_column_is_a_clear_error(tmp_path: Path) -> None:
    pd.DataFrame({"review": ["good", "bad"] * 5, "label": ["a", "b"] * 5}).to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(DataError, match=r"text column 'text' not found.*'review', 'label'.*data\.text_column"):
        load_text(tmp_path / "r.csv")
    with pytest.raises(DataError, match="both 'label'"):
        load_text(tmp_path / "r.csv", text_column="label")
    pd.DataFrame({"text": [" ", None] * 5, "label": ["a", "b"] * 5}).to_csv(tmp_path / "e.csv", index=False)
    with pytest.raises(DataError, match="every row has an empty 'text'"):
        load_text(tmp_path / "e.csv")


def test_wrong_kind_combinations_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not text"):
        load_text("sklearn:iris")
    pd.DataFrame({"text": ["x"]}).to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(DataError, match="emails are read from a folder"):
        load_text(tmp_path / "a.csv", format="emails")
    with pytest.raises(DataError, match="this task reads table; use a text task"):
        load_dataset(DataConfig(path=str(tmp_path), format="emails"), seed=0, task_kind="classification", kind="table")


# ----------------------------------------------------------------------------------------------- emails


def test_email_folder_loads_as_text(mail_root: Path) -> None:
    ds = load_text(mail_root)
    assert (ds.kind, ds.features, ds.categorical, ds.classes) == ("text", ["text"], [], ["ham", "spam"])
    assert list(ds.frame.columns) == ["text", "label", "source"] and len(ds.frame) == 60
    assert ds.frame["source"][0].startswith("ham/easy_ham/0") and ds.frame["text"][0].startswith("Subject: ")
    for split in ("train", "val", "test"):  # stratified: both classes in every split
        assert set(ds.frame["label"][ds.split == split]) == {"ham", "spam"}
    assert (ds.split == "train").sum() == 48
    skipped = {s["item"]: s["reason"] for s in ds.log.skipped}
    assert set(skipped) == {
        "ham/easy_ham/broken", "ham/easy_ham/pipe", "spam/spam/99998.junk", "spam/spam/99999.markup"
    }
    assert "no text after parsing" in skipped["spam/spam/99999.markup"]
    assert not any("cmds" in s or "MANIFEST" in s or "DS_Store" in s for s in ds.frame["source"])
    assert any("parsed 62 messages in 2 label folders" in a for a in ds.log.actions)
    assert ds.summary()["class_counts"] == {"ham": 30, "spam": 30}


def test_email_texts_are_cached_and_the_cache_follows_the_files(mail_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(mail_root, root, symlinks=True, ignore=shutil.ignore_patterns("pipe"))
    first = load_text(root)
    second = load_text(root)
    assert any("read the cached text of 62 messages" in a for a in second.log.actions)
    assert second.fingerprint == first.fingerprint
    pd.testing.assert_frame_equal(second.frame, first.frame)
    touched = root / first.frame["source"][0]
    touched.write_bytes(b"Subject: rewritten\n\nnew words\n")
    third = load_text(root)
    assert any(a.startswith("parsed 62") for a in third.log.actions)
    assert "new words" in set(third.frame["text"].str[-9:])
    bare = load_text(root, email=EmailConfig(headers=[], max_chars=200))
    assert any(a.startswith("parsed") for a in bare.log.actions)
    assert not bare.frame["text"][0].startswith("Subject:") and bare.frame["text"].str.len().max() <= 200


def test_email_folder_inside_a_zip_and_format_auto(mail_root: Path, tmp_path: Path) -> None:
    archive = tmp_path / "mail.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(mail_root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                zf.write(path, Path("corpus") / path.relative_to(mail_root))  # one wrapping folder
    ds = load_text(archive)
    assert ds.classes == ["ham", "spam"] and len(ds.frame) == 60
    profile = infer_data(str(archive))
    assert (profile.kind, profile.format, profile.task) == ("text", "emails", "text-classification") and profile.archive


def test_text_kind_prefers_a_table_in_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    (folder / "sub").mkdir(parents=True)
    pd.DataFrame({"text": [LONG.format(i) for i in range(20)], "label": ["a", "b"] * 10}).to_csv(
        folder / "sub" / "data.csv", index=False
    )
    ds = load_text(folder)
    assert ds.kind == "text" and "source" not in ds.frame.columns and len(ds.frame) == 20


def test_email_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "one" / "ham").mkdir(parents=True)
    (tmp_path / "one" / "ham" / "1").write_bytes(b"Subject: hi\n\nhello\n")
    (tmp_path / "one" / "ham" / "2").write_bytes(b"Subject: yo\n\nhello\n")
    with pytest.raises(DataError, match="same label 'ham'"):
        load_text(tmp_path / "one")
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "1.eml").write_bytes(b"Subject: hi\n\nhello\n")
    with pytest.raises(DataError, match="no messages found under"):
        load_text(tmp_path / "loose", format="emails")
    with pytest.raises(DataError, match="label folders of files"):
        load_dataset(DataConfig(path=str(tmp_path / "one")), seed=0, task_kind="classification", kind="table")


# --------------------------------------------------------------------------------------------- profiles


def test_infer_email_folder(mail_root: Path) -> None:
    start = time.perf_counter()
    p = infer_data(str(mail_root))
    assert (p.kind, p.format, p.task, p.target) == ("text", "emails", "text-classification", None)
    assert p.text_column == "text"
    assert p.rows == 62 and p.n_classes == 2 and p.classes == {"spam": 32, "ham": 30}  # files, before parsing
    assert p.text_length is not None and p.text_length > 100
    assert json.loads(json.dumps(p.to_dict()))["text_column"] == "text"
    assert time.perf_counter() - start < 5


def test_infer_csv_with_text(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    named = pd.DataFrame({"Review": [f"ok {i}" for i in range(60)], "stars": rng.integers(1, 4, 60), "x": 1.0})
    named.to_csv(tmp_path / "named.csv", index=False)
    p = infer_data(str(tmp_path / "named.csv"))
    assert (p.kind, p.task, p.text_column, p.target) == ("text", "text-classification", "Review", "x")
    long = pd.DataFrame({"blurb": [LONG.format(i) for i in range(60)], "label": ["a", "b", "c"] * 20})
    long.to_parquet(tmp_path / "long.parquet")
    p = infer_data(str(tmp_path / "long.parquet"))
    assert (p.kind, p.task, p.text_column, p.target) == ("text", "text-classification", "blurb", "label")
    assert p.text_length is not None and p.text_length > 40
    short = pd.DataFrame({"city": ["Oslo", "Rome", "Lima"] * 20, "label": ["a", "b"] * 30})
    short.to_csv(tmp_path / "short.csv", index=False)
    p = infer_data(str(tmp_path / "short.csv"))
    assert (p.kind, p.task, p.text_column) == ("table", "tabular-classification", None)
