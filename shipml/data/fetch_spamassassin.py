"""The SpamAssassin public mail corpus: five .tar.bz2 parts into `to/<label>/<part>/<message>`.

Integrity: each message file is named `NNNNN.<md5 of its bytes>`, so every message is checked
against its own name. A mismatch is reported, not fatal, and the message is **kept**: the
published corpus has one genuine mismatch (a message whose name was computed before a later edit),
and dropping real mail because of its file name would silently change the data set. Exact duplicate
messages (same bytes) are written once: the first in the order of `PARTS` (within a part, by file
name) is kept and the others are listed in the report. Members that are not messages (`cmds`, the
commands that built a part; anything not named like a message) are skipped and listed. An archive
with an unsafe member (absolute path, `..`, a link pointing out) is rejected as a whole.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shipml.data.archives import check_member_link, check_member_name, corrupt_archive
from shipml.data.cache import file_sha256
from shipml.data.fetch import FetchReport, download, download_dir, register_fetcher
from shipml.errors import DataError

__all__ = ["BASE_URL", "PARTS", "Part", "fetch_spamassassin"]

BASE_URL = "https://spamassassin.apache.org/old/publiccorpus/"
_MESSAGE_NAME = re.compile(r"\d+\.([0-9a-f]{32})")


@dataclass(frozen=True)
class Part:
    """One published archive of the corpus."""

    archive: str
    folder: str  # the folder the archive holds
    label: str

    @property
    def url(self) -> str:
        return BASE_URL + self.archive


PARTS = (  # duplicates keep the copy in the earliest part of this order
    Part("20030228_easy_ham.tar.bz2", "easy_ham", "ham"),
    Part("20030228_easy_ham_2.tar.bz2", "easy_ham_2", "ham"),
    Part("20030228_hard_ham.tar.bz2", "hard_ham", "ham"),
    Part("20030228_spam.tar.bz2", "spam", "spam"),
    Part("20050311_spam_2.tar.bz2", "spam_2", "spam"),
)


def _archives(from_dir: Path | None, scratch: Path | None, log: Callable[[str], None]) -> dict[Part, Path]:
    """Where each archive is: in `from_dir` (all checked before any work) or downloaded to `scratch`."""
    if from_dir is not None:
        missing = [p for p in PARTS if not (from_dir / p.archive).is_file()]
        if missing:
            listed = "; ".join(f"{p.archive} ({p.url})" for p in missing)
            raise DataError(f"--from {from_dir} lacks {len(missing)} of the {len(PARTS)} archives: {listed}")
        return {p: from_dir / p.archive for p in PARTS}
    assert scratch is not None
    out = {}
    for p in PARTS:
        log(f"downloading {p.url}")
        download(p.url, scratch / p.archive, what="spamassassin")
        out[p] = scratch / p.archive
    return out


def _members(archive: Path, part: Part, report: FetchReport) -> list[tuple[str, str, bytes]]:
    """(path below the label folder, md5 its name claims, bytes) of each message, sorted by path."""
    found: list[tuple[str, str, bytes]] = []
    try:
        with tarfile.open(archive, "r:*") as tf:
            for m in tf:
                check_member_name(archive, m.name)
                if m.issym() or m.islnk():
                    check_member_link(archive, m.name, m.linkname, relative_to_member=m.issym())
                    report.skipped.append({"item": f"{part.archive}:{m.name}", "reason": "a link, not a message"})
                    continue
                if not m.isfile():
                    continue
                parts = [s for s in m.name.replace("\\", "/").split("/") if s not in ("", ".")]
                if any(s.startswith(".") or s == "__MACOSX" for s in parts):
                    continue
                if parts[-1] == "cmds":
                    report.skipped.append({"item": f"{part.archive}:{m.name}", "reason": "cmds file, not a message"})
                    continue
                named = _MESSAGE_NAME.fullmatch(parts[-1])
                if named is None:
                    report.skipped.append(
                        {"item": f"{part.archive}:{m.name}", "reason": "not named like a message (NNNNN.<md5>)"}
                    )
                    continue
                fh = tf.extractfile(m)
                if fh is None:
                    continue
                rel = "/".join(parts) if len(parts) > 1 else f"{part.folder}/{parts[0]}"
                found.append((rel, named.group(1), fh.read()))
    except DataError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as err:
        raise corrupt_archive(archive, err) from None
    return sorted(found, key=lambda item: item[0])


@register_fetcher("spamassassin")
def fetch_spamassassin(build: Path, from_dir: Path | None, log: Callable[[str], None]) -> FetchReport:
    """Write the corpus into `build` (see the module docstring); returns the report for the manifest."""
    report = FetchReport(
        name="spamassassin", source=BASE_URL, origin="download" if from_dir is None else str(from_dir.absolute())
    )
    scratch = download_dir() if from_dir is None else None
    try:
        archives = _archives(from_dir, scratch, log)
        kept: dict[bytes, str] = {}  # sha256 of the bytes -> the file written for them
        written: set[str] = set()
        for part in PARTS:
            path = archives[part]
            log(f"reading {path.name}")
            members = _members(path, part, report)
            count = 0
            for rel, expected, data in members:
                out_rel = f"{part.label}/{rel}"
                digest = hashlib.sha256(data).digest()
                if digest in kept:
                    report.duplicates.append({"file": out_rel, "same_as": kept[digest]})
                    continue
                if out_rel in written:  # same name, other bytes: keep the first, say so
                    report.skipped.append({"item": out_rel, "reason": "a second file with this name"})
                    continue
                actual = hashlib.md5(data).hexdigest()
                if actual != expected:
                    report.md5_mismatches.append({"file": out_rel, "expected": expected, "actual": actual})
                target = build / out_rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                kept[digest] = out_rel
                written.add(out_rel)
                count += 1
            report.parts.append(
                {
                    "archive": part.archive,
                    "url": part.url,
                    "sha256": file_sha256(path),
                    "label": part.label,
                    "folder": part.folder,
                    "in_archive": len(members),
                    "messages": count,
                }
            )
            report.labels[part.label] = report.labels.get(part.label, 0) + count
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    n = len(report.md5_mismatches)
    if n:
        shown = ", ".join(m["file"] for m in report.md5_mismatches[:3]) + (", ..." if n > 3 else "")
        report.notes.append(
            f"{n} message{'s do' if n > 1 else ' does'} not match the MD5 in {'their' if n > 1 else 'its'} file "
            f"name ({shown}); kept (the published corpus has one such message), listed in MANIFEST.json"
        )
    if report.duplicates:
        report.notes.append(
            f"{len(report.duplicates)} exact duplicate messages were not written (listed in MANIFEST.json)"
        )
    return report
