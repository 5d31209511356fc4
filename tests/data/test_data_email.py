"""message_text and html_to_text: real SpamAssassin messages, and synthetic edge cases that must not crash."""

from __future__ import annotations

import email
import email.policy
import random
import re
import tarfile
from collections.abc import Callable
from email.message import Message
from pathlib import Path

import pytest

from shipml.core.email import decode_bytes, message_text
from shipml.core.html_text import html_to_text

KW = {"headers": ["subject", "from"], "body": True, "max_chars": 20_000}
TAG = re.compile(r"</?(?:html|body|head|p|div|font|table|tr|td|br|span|a|b|img|center)\b[^>]*>", re.IGNORECASE)
WORD = re.compile(r"[A-Za-z]{6,}")


@pytest.fixture(scope="module")
def spam(small_data: Path) -> dict[str, bytes]:
    """The 30 real spam messages of tests/fixtures, chosen to hold every MIME oddity searched for below."""
    return {p.name: p.read_bytes() for p in sorted((small_data / "spamassassin" / "spam").iterdir())}


@pytest.fixture(scope="module", params=["fixture", "whole spam part"])
def spam_part(request: pytest.FixtureRequest, spam: dict[str, bytes]) -> dict[str, bytes]:
    """The fixture's spam, and every message of the real spam part (500 messages, about 0.2 s; needs ../shared)."""
    if request.param == "fixture":
        return spam
    path = request.getfixturevalue("shared_data") / "spamassassin" / "20030228_spam.tar.bz2"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    with tarfile.open(path) as tf:
        out = {}
        for m in tf:
            fh = tf.extractfile(m) if m.isfile() else None
            if fh is not None:
                out[m.name] = fh.read()
    return dict(sorted(out.items()))


def leaves(raw: bytes) -> list[Message]:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    return [p for p in msg.walk() if not p.is_multipart()]


def payload(part: Message) -> bytes:
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def first(spam: dict[str, bytes], predicate: Callable[[list[Message]], bool]) -> tuple[str, bytes, list[Message]]:
    for name, raw in spam.items():
        parts = leaves(raw)
        if predicate(parts):
            return name, raw, parts
    pytest.fail("no message in the spam part has this property")


def words_of_plain(part: Message) -> list[str]:
    return WORD.findall(payload(part).decode("latin-1"))[:5]


def test_real_multipart_alternative_uses_the_plain_part(spam: dict[str, bytes]) -> None:
    def alt(parts: list[Message]) -> bool:
        types = [p.get_content_type() for p in parts]
        if "text/plain" not in types or "text/html" not in types:
            return False
        return len(words_of_plain(parts[types.index("text/plain")])) == 5

    name, raw, parts = first(spam, alt)
    text = message_text(raw, **KW)
    plain = next(p for p in parts if p.get_content_type() == "text/plain")
    assert all(w in text for w in words_of_plain(plain)), name
    assert not TAG.search(text), name


def test_real_html_only_message_becomes_text(spam: dict[str, bytes]) -> None:
    def html_only(parts: list[Message]) -> bool:
        return [p.get_content_type() for p in parts] == ["text/html"] and b"<p" in payload(parts[0]).lower()

    name, raw, parts = first(spam, html_only)
    html = payload(parts[0]).decode("latin-1")
    body = re.sub(r"(?is)<(script|style|head)\b.*?</\1>", " ", html)
    visible = WORD.findall(re.sub(r"<[^>]*>", " ", body))
    text = message_text(raw, **KW)
    assert visible and all(w in text for w in visible[:5]), name
    assert not TAG.search(text) and "&nbsp;" not in text, name


def test_real_quoted_printable_is_decoded(spam: dict[str, bytes]) -> None:
    def qp(parts: list[Message]) -> bool:
        return any(
            (p.get("content-transfer-encoding") or "").lower() == "quoted-printable"
            and p.get_content_type() == "text/plain"
            and b"=3D" in p.get_payload(decode=False).encode("latin-1", "replace")
            and b"=3D" not in payload(p)
            for p in parts
        )

    name, raw, parts = first(spam, qp)
    text = message_text(raw, **KW)
    assert "=3D" not in text and "=20" not in text and not re.search(r"=\n", text), name
    part = next(p for p in parts if p.get_content_type() == "text/plain")
    assert all(w in text for w in words_of_plain(part)), name


def test_real_base64_body_is_decoded(spam: dict[str, bytes]) -> None:
    def b64(parts: list[Message]) -> bool:
        return any(
            (p.get("content-transfer-encoding") or "").lower() == "base64"
            and p.get_content_type() == "text/plain"
            and len(words_of_plain(p)) == 5
            for p in parts
        )

    name, raw, parts = first(spam, b64)
    text = message_text(raw, **KW)
    part = next(p for p in parts if (p.get("content-transfer-encoding") or "").lower() == "base64")
    encoded_line = part.get_payload(decode=False).strip().splitlines()[0]
    assert encoded_line not in text, name
    assert all(w in text for w in words_of_plain(part)), name


@pytest.mark.parametrize(
    "charsets", [("iso-8859-1", "windows-1252"), ("big5", "gb2312", "ks_c_5601-1987")], ids=["latin", "cjk"]
)
def test_real_non_utf8_charset_is_honoured(spam: dict[str, bytes], charsets: tuple[str, ...]) -> None:
    def legacy(p: Message) -> bool:
        if p.get_content_maintype() != "text" or p.get_content_charset() not in charsets:
            return False
        try:
            payload(p).decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False

    name, raw, parts = first(spam, lambda parts: any(legacy(p) for p in parts))
    part = next(p for p in parts if legacy(p))
    expected = re.sub(r"<[^>]*>", " ", payload(part).decode(part.get_content_charset(), errors="replace"))
    non_ascii = [w for w in re.findall(r"[^\s<>&;]{2,}", expected) if not w.isascii() and "\ufffd" not in w]
    text = message_text(raw, **KW)
    assert non_ascii and all(w in text for w in non_ascii[:5]), (name, non_ascii[:5])
    assert "\ufffd" not in text, name


def test_the_whole_spam_part_parses_without_tags_or_errors(spam_part: dict[str, bytes]) -> None:
    texts = {name: message_text(raw, **KW) for name, raw in spam_part.items()}
    assert all(t.strip() for t in texts.values())
    assert all(t.startswith(("Subject:", "From:")) for t in texts.values())
    structural = re.compile(TAG.pattern.replace("|a|", "|"), re.IGNORECASE)
    assert not [n for n, t in texts.items() if structural.search(t)]
    # plain-text spam with an "AOL users <a href=...>click here</a>" line keeps it: it is their text
    assert len([n for n, t in texts.items() if TAG.search(t)]) < 15


# ------------------------------------------------------------------------------------------- synthetic


def test_encoded_word_headers_are_decoded() -> None:
    raw = (
        b"Subject: =?utf-8?B?SGVsbG8gd8O2cmxk?= and =?iso-8859-1?q?caf=E9?=\n"
        b"From: =?utf-8?q?J=C3=B6rg?= <j@example.org>\nTo: x@example.org\n\nthe body\n"
    )
    assert message_text(raw, **KW) == "Subject: Hello wörld and café\nFrom: Jörg <j@example.org>\n\nthe body"
    assert message_text(raw, headers=["to"], body=False, max_chars=100) == "To: x@example.org"
    assert message_text(raw, headers=[], body=True, max_chars=100) == "the body"


@pytest.mark.parametrize("charset", ["x-unknown", 'iso-8859-1\\"', "base64", "", "utf-7x", "us-ascii"])
def test_unknown_or_mangled_charsets_fall_back(charset: str) -> None:
    raw = f'Subject: s\nContent-Type: text/plain; charset="{charset}"\n\n'.encode() + "naïve café".encode("latin-1")
    assert message_text(raw, **KW) == "Subject: s\n\nnaïve café"



def test_decode_bytes_order() -> None:
    assert decode_bytes("naïve".encode(), "x-unknown") == "naïve"  # unknown: UTF-8 first...
    assert decode_bytes("naïve “q”".encode("cp1252"), "x-unknown") == "naïve “q”"  # ...then Windows-1252
    assert decode_bytes("naïve".encode("latin-1"), "iso-8859-1") == "naïve"  # a declared charset is honoured
    assert decode_bytes("日本".encode("euc-jp"), "euc-jp") == "日本"
    assert decode_bytes(b"\x81\x8d", None) == "\x81\x8d"  # bytes Windows-1252 lacks: Latin-1 decodes anything


def test_raw_8bit_header_is_decoded_not_replaced() -> None:
    raw = "Subject: özür dileriz\n\nx\n".encode("cp1252")
    assert message_text(raw, **KW).startswith("Subject: özür dileriz")


def test_empty_markup_only_and_binary_junk_give_empty_text() -> None:
    assert message_text(b"Subject: \nFrom: \n\n\n", **KW) == ""
    markup = b"Content-Type: text/html\n\n<html><head><title>t</title><style>p{x}</style></head><body><img src=a>"
    assert message_text(markup + b"<script>var a=1;</script><br/></body></html>", **KW) == ""
    assert message_text(bytes(range(9)) * 40, **KW) == ""
    image_only = (
        b"Subject: \nContent-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: image/gif\n"
        b"Content-Transfer-Encoding: base64\n\nR0lGODlhAQABAAAAACw=\n--XX--\n"
    )
    assert message_text(image_only, **KW) == ""


def test_html_only_when_there_is_no_plain_text() -> None:
    raw = (
        b"Subject: s\nContent-Type: multipart/alternative; boundary=B\n\n--B\nContent-Type: text/plain\n\n"
        b"plain words\n--B\nContent-Type: text/html\n\n<p>html words</p>\n--B--\n"
    )
    assert message_text(raw, **KW) == "Subject: s\n\nplain words"
    assert message_text(raw.replace(b"plain words", b"   "), **KW) == "Subject: s\n\nhtml words"
    as_plain = b"Content-Type: text/plain\n\n<p><b>Buy</b> now &amp; save</p>"  # spam sends HTML as text/plain
    assert message_text(as_plain, **KW) == "Buy now & save"


def test_attachments_and_uuencoded_blocks_are_skipped() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/plain\n\nsee attached\n"
        b"begin 644 a.bin\nM86)C9&5F9VAI:FML;6YO<'%R<W1U=G=X>7HP,3(S-#4V-S@Y86)C9&5F9VAI\n`\nend\nbye\n"
        b"--B\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=a.pdf\n"
        b"Content-Transfer-Encoding: base64\n\nJVBERi0xLjQKJcOkw7zDtsOf\n--B--\n"
    )
    assert message_text(raw, **KW) == "see attached\nbye"


def test_base64_spoiled_by_a_list_footer_is_still_decoded() -> None:
    raw = (
        b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
        b"SGVsbG8gZnJvbSBiYXNlNjQgbGFuZA0K\n\n-----\nmailing list footer\n"
    )
    assert message_text(raw, **KW) == "Hello from base64 land\n\n-----\nmailing list footer"


def test_whitespace_is_collapsed_and_text_cut() -> None:
    raw = b"Subject:   many    spaces\n\nline  one\t\ttab\n\n\n\n\nline two\r\n"
    assert message_text(raw, **KW) == "Subject: many spaces\n\nline one tab\n\nline two"
    assert message_text(b"\n\n" + b"word " * 100, headers=[], body=True, max_chars=100) == ("word " * 20).strip()


def test_never_raises_on_random_bytes_or_truncated_messages() -> None:
    rng = random.Random(0)
    for _ in range(300):
        raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 2000)))
        message_text(raw, **KW).encode("utf-8")  # a str, and valid UTF-8 (parquet needs it)
    full = (
        b"Subject: =?utf-8?B?SGVsbG8=?=\nContent-Type: multipart/mixed; boundary=B\n\n--B\n"
        b"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
        b"<p>caf=C3=A9 <b>bold</b></p>\n--B\nContent-Type: text/plain; charset=koi8-r\n"
        b"Content-Transfer-Encoding: base64\n\n8NLJ18XU\n--B--\n"
    )
    assert message_text(full, **KW) == "Subject: Hello\n\nПривет"
    for cut in range(len(full)):
        message_text(full[:cut], **KW).encode("utf-8")


def test_html_to_text() -> None:
    html = (
        "<html><head><title>T</title><style>.a{}</style></head><body><h1>Title</h1><p>One&nbsp;&amp; two"
        "<br>three</p><table><tr><td>a</td><td>b</td></tr></table><script>x()</script>&#8217;ok</body></html>"
    )
    assert html_to_text(html) == "Title\n\nOne & two\nthree\n\na b\n\n\u2019ok"
    assert html_to_text("<head><title>no end of head<body>visible") == "visible"
    assert html_to_text("<p>unclosed <b>tags & stray < signs") == "unclosed tags & stray < signs"
    assert html_to_text("") == ""
