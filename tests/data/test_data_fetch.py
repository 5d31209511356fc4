"""fetch_dataset: the SpamAssassin fetcher on hand-made archives and on the real corpus; its errors."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from shipml.config import DataConfig
from shipml.data import FetchReport, fetch_dataset, infer_data, list_fetchers, load_dataset, mail_folder
from shipml.data.fetch import register_fetcher
from shipml.data.fetch_spamassassin import PARTS
from shipml.errors import DataError

SA = "spamassassin"


def first_messages(folder: Path, n: int) -> list[tuple[str, bytes]]:
    """(file name, bytes) of the first `n` messages, in name order, of a folder of raw messages."""
    return [(p.name, p.read_bytes()) for p in sorted(folder.iterdir())[:n]]


def write_tar_bz2(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:bz2") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def real(small_data: Path) -> dict[str, list[tuple[str, bytes]]]:
    """A few real messages per label, from the corpus sample in tests/fixtures (original names and bytes)."""
    folder = small_data / SA
    return {"ham": first_messages(folder / "ham", 6), "spam": first_messages(folder / "spam", 4)}


@pytest.fixture
def archives(tmp_path: Path, real: dict[str, list[tuple[str, bytes]]]) -> Path:
    """The five official archive names holding: real messages, a `cmds` file, one message whose
    bytes do not match the MD5 in its name, and one spam message present in both spam parts."""
    ham, spam = real["ham"], real["spam"]
    bad_bytes = ham[5][1] + b"\nedited after naming\n"
    dup_name, dup_bytes = spam[3]
    contents = {
        "20030228_easy_ham.tar.bz2": {f"easy_ham/{n}": b for n, b in ham[:3]} | {"easy_ham/cmds": b"mv 1 2\n"},
        "20030228_easy_ham_2.tar.bz2": {f"easy_ham_2/{n}": b for n, b in ham[3:5]},
        "20030228_hard_ham.tar.bz2": {f"hard_ham/{ham[5][0]}": bad_bytes},
        "20030228_spam.tar.bz2": {f"spam/{n}": b for n, b in spam[:3]} | {f"spam/{dup_name}": dup_bytes},
        "20050311_spam_2.tar.bz2": {f"spam_2/01396.{hashlib.md5(dup_bytes).hexdigest()}": dup_bytes},
    }
    folder = tmp_path / "downloads"
    folder.mkdir()
    for archive, members in contents.items():
        write_tar_bz2(folder / archive, members)
    return folder


def test_fetch_from_folder_writes_layout_manifest_and_findings(
    archives: Path, tmp_path: Path, real: dict[str, list[tuple[str, bytes]]]
) -> None:
    messages: list[str] = []
    report = fetch_dataset(SA, tmp_path / "corpus", from_dir=archives, log=messages.append)
    out = tmp_path / "corpus"
    assert isinstance(report, FetchReport) and report.labels == {"ham": 6, "spam": 4} and report.messages == 10
    ham, spam = real["ham"], real["spam"]
    assert (out / "ham" / "easy_ham" / ham[0][0]).read_bytes() == ham[0][1]
    assert (out / "spam" / "spam" / spam[0][0]).is_file()
    assert not (out / "ham" / "easy_ham" / "cmds").exists()
    assert [s["reason"] for s in report.skipped] == ["cmds file, not a message"]
    bad = f"ham/hard_ham/{ham[5][0]}"
    assert [m["file"] for m in report.md5_mismatches] == [bad] and (out / bad).is_file()  # reported, kept
    assert report.duplicates == [
        {"file": f"spam/spam_2/01396.{hashlib.md5(spam[3][1]).hexdigest()}", "same_as": f"spam/spam/{spam[3][0]}"}
    ]
    assert not (out / "spam" / "spam_2").exists()  # its only message was the duplicate
    assert [p["messages"] for p in report.parts] == [3, 2, 1, 4, 0]
    assert [p["in_archive"] for p in report.parts] == [3, 2, 1, 4, 1]
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert manifest == json.loads(json.dumps(report.to_dict()))
    assert manifest["parts"][0]["sha256"] == hashlib.sha256((archives / PARTS[0].archive).read_bytes()).hexdigest()
    assert manifest["parts"][4]["url"].endswith("/old/publiccorpus/20050311_spam_2.tar.bz2")
    assert manifest["fetched_at"] and manifest["origin"] == str(archives.absolute())
    assert any("20030228_spam.tar.bz2" in m for m in messages)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "downloads"]  # no temp folder left


def test_missing_archive_names_it_and_its_url(archives: Path, tmp_path: Path) -> None:
    (archives / "20030228_hard_ham.tar.bz2").unlink()
    with pytest.raises(DataError, match=r"20030228_hard_ham\.tar\.bz2 \(https://spamassassin\.apache\.org/old/"):
        fetch_dataset(SA, tmp_path / "corpus", from_dir=archives)
    assert not (tmp_path / "corpus").exists()


def test_existing_target_is_never_touched(archives: Path, tmp_path: Path) -> None:
    to = tmp_path / "mine"
    to.mkdir()
    (to / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match=r"already exists.*delete it or choose another --to"):
        fetch_dataset(SA, to, from_dir=archives)
    assert [p.name for p in to.iterdir()] == ["notes.txt"] and (to / "notes.txt").read_text() == "keep me"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        fetch_dataset(SA, tmp_path / "afile", from_dir=archives)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert fetch_dataset(SA, empty, from_dir=archives).messages == 10  # an empty folder is fine


def test_offline_download_points_at_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match=r"may be offline.*--from") as info:
        fetch_dataset(SA, tmp_path / "corpus", log=lambda _m: None)
    assert "https://spamassassin.apache.org/old/publiccorpus/20030228_easy_ham.tar.bz2" in str(info.value)
    assert not (tmp_path / "corpus").exists() and list(tmp_path.iterdir()) == []


def test_download_path_uses_urllib_and_cleans_up(
    archives: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requested: list[str] = []

    def fake_urlopen(url: str, timeout: float) -> io.BufferedReader:
        requested.append(url)
        return open(archives / url.rsplit("/", 1)[-1], "rb")

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    report = fetch_dataset(SA, tmp_path / "corpus")
    assert report.origin == "download" and report.messages == 10
    assert requested == [p.url for p in PARTS]
    downloads = Path(os.environ["SHIPML_CACHE"]) / "downloads"
    assert list(downloads.iterdir()) == []  # the temporary downloads are gone


def test_unsafe_or_corrupt_archives_are_rejected(archives: Path, tmp_path: Path) -> None:
    write_tar_bz2(archives / "20030228_hard_ham.tar.bz2", {"../../evil/00001.0123456789abcdef0123456789abcdef": b"x"})
    with pytest.raises(DataError, match=r"refusing.*climbs out"):
        fetch_dataset(SA, tmp_path / "corpus", from_dir=archives)
    (archives / "20030228_hard_ham.tar.bz2").write_bytes(b"BZh91AY&SY not really")
    with pytest.raises(DataError, match="corrupt or truncated"):
        fetch_dataset(SA, tmp_path / "corpus", from_dir=archives)
    assert not (tmp_path / "corpus").exists() and not (tmp_path.parent / "evil").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["downloads"]


def test_registry() -> None:
    assert SA in list_fetchers()
    with pytest.raises(DataError, match=r"unknown data set 'nope'; available: .*spamassassin"):
        fetch_dataset("nope", Path("unused"))
    with pytest.raises(ValueError, match="already registered"):
        register_fetcher(SA)(lambda build, from_dir, log: FetchReport(name="x", source="", origin=""))


@pytest.fixture(scope="module")
def real_corpus(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FetchReport]:
    """The whole corpus fetched once (about 2 s; bench/ measures speed): (folder, report)."""
    to = tmp_path_factory.mktemp("real") / "sa"
    return to, fetch_dataset(SA, to, from_dir=shared_data / SA)


def test_fetch_the_real_corpus(real_corpus: tuple[Path, FetchReport]) -> None:
    to, report = real_corpus
    assert sum(p["in_archive"] for p in report.parts) == 6046
    assert [p["messages"] for p in report.parts] == [2500, 1400, 250, 500, 1396]
    assert report.labels == {"ham": 4150, "spam": 1896} and report.duplicates == [] and report.skipped == []
    assert report.md5_mismatches == [
        {
            "file": "ham/hard_ham/00230.244a63cd74c81123ef26129453e32c95",
            "expected": "244a63cd74c81123ef26129453e32c95",
            "actual": "30e1fcfccb8a25b8550c292233698b67",
        }
    ]
    assert len(list((to / "spam" / "spam_2").iterdir())) == 1396


def test_the_fetched_corpus_loads_as_text(real_corpus: tuple[Path, FetchReport], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The worked example end to end: 6,046 messages fetched, 5,946 distinct texts loaded, then cached."""
    cfg = DataConfig(path=str(real_corpus[0]))
    ds = load_dataset(cfg, seed=0, task_kind="classification", kind="text")
    assert ds.summary()["class_counts"] == {"ham": 4109, "spam": 1837} and ds.log.skipped == []
    assert any("removed 100 exact duplicate texts" in a for a in ds.log.actions)
    parsed = []
    real_parse = mail_folder.message_text
    monkeypatch.setattr(mail_folder, "message_text", lambda *a, **k: parsed.append(1) or real_parse(*a, **k))
    warm = load_dataset(cfg, seed=0, task_kind="classification", kind="text")
    assert warm.fingerprint == ds.fingerprint and parsed == []  # the second load parses nothing: cached
    assert os.listdir(Path(os.environ["SHIPML_CACHE"]) / "text")  # the parsed texts are cached
    profile = infer_data(str(real_corpus[0]))
    assert (profile.rows, profile.classes) == (6046, {"ham": 4150, "spam": 1896})
