"""The known-bad version check: a listed version yields one message naming it, the reason and the fix; a good
version, or a distribution that is not installed, yields none; every table entry is well formed."""

from __future__ import annotations

from importlib import metadata

import pytest

from shipml.core.versions import KNOWN_BAD, KnownBad, check_known_bad, in_range


def _installed(versions: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend exactly `versions` are installed."""

    def version(dist: str) -> str:
        if dist not in versions:
            raise metadata.PackageNotFoundError(dist)
        return versions[dist]

    monkeypatch.setattr(metadata, "version", version)


def test_a_known_bad_version_is_named_with_reason_and_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    _installed({"numpy": "1.26.4"}, monkeypatch)
    [message] = check_known_bad()
    assert message.startswith("numpy 1.26.4 is known to break shipml (numpy<2)")
    assert "pyarrow" in message and "Fix: pip install 'numpy>=2'" in message


@pytest.mark.parametrize("versions", [{"numpy": "2.4.6"}, {"numpy": "2.0.0"}, {"numpy": "2.0.0rc1"}, {}])
def test_good_or_absent_versions_give_no_message(versions: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _installed(versions, monkeypatch)
    assert check_known_bad() == []


def test_every_bad_entry_of_a_table_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    table = (KnownBad("pytest", ">=9.2,<9.3", "r1", "f1"), KnownBad("hypothesis", "==6.1", "r2", "f2"),
             KnownBad("ruff", "<0.6", "r3", "f3"))
    _installed({"pytest": "9.2.0", "hypothesis": "6.1.0", "ruff": "0.17.6"}, monkeypatch)
    assert [m.split(" is ")[0] for m in check_known_bad(table)] == ["pytest 9.2.0", "hypothesis 6.1.0"]


@pytest.mark.parametrize(("version", "spec", "expected"), [
    ("1.26.4", "<2", True), ("2", "<2", False), ("2.0.0", "<2.0", False),
    ("9.2.0", ">=9.2,<9.3", True), ("9.3.0", ">=9.2,<9.3", False), ("9.1.9", ">=9.2,<9.3", False),
    ("2.13.0+cpu", "==2.13", True), ("2.13.0+cpu", "!=2.13.0", False), ("0.29.3", ">0.12", True),
])
def test_ranges_compare_release_numbers(version: str, spec: str, expected: bool) -> None:
    assert in_range(version, spec) is expected


def test_a_malformed_range_is_refused() -> None:
    with pytest.raises(ValueError, match="bad version clause"):
        in_range("1.0", "~=1.0")


@pytest.mark.parametrize("entry", KNOWN_BAD, ids=lambda e: f"{e.dist}{e.bad}")
def test_table_entries_are_well_formed(entry: KnownBad) -> None:
    in_range("0", entry.bad)  # parses
    assert entry.dist and entry.reason and entry.fix
