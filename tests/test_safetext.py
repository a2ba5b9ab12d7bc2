"""The text-safety helpers: one destination each (terminal, JSON, spreadsheet, stored URL)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from consentfetch.safetext import (
    FORMULA_STARTS,
    for_spreadsheet,
    for_terminal,
    json_for_terminal,
    lost_userinfo,
    redact_userinfo,
)

# Every character a terminal may act on: C0, DEL, C1, bidi embeddings/overrides/isolates.
UNSAFE = [chr(c) for c in (*range(0x00, 0x20), *range(0x7f, 0xa0), *range(0x202a, 0x202f),
                           *range(0x2066, 0x206a))]


@pytest.mark.parametrize("char", UNSAFE)
def test_terminal_escapes_every_control_and_bidi_character(char: str) -> None:
    shown = for_terminal(f"a{char}b")
    assert char not in shown and shown.isprintable()
    code = ord(char)
    assert shown == (f"a\\x{code:02x}b" if code < 0x100 else f"a\\u{code:04x}b")


@pytest.mark.parametrize("text", ["plain", "https://example.com/a.jpg?x=1&y=2", "café 東京 🙂",
                                  "tab-free", "\u00a0nbsp", "\u200bzero width", ""])
def test_terminal_keeps_printable_text(text: str) -> None:
    assert for_terminal(text) == text


def test_terminal_forgery_vectors() -> None:
    assert for_terminal("x\x1b[2J\x1b]0;title\x07\u009b31m\r\nforged") == \
        "x\\x1b[2J\\x1b]0;title\\x07\\x9b31m\\x0d\\x0aforged"
    assert for_terminal("\u202egpj.exe") == "\\u202egpj.exe"


@pytest.mark.parametrize("char", UNSAFE + ["\u2028", "\u2029", '"', "\\"])
def test_json_for_terminal_is_the_same_value_without_raw_controls(char: str) -> None:
    value = {"k": f"a{char}b", "n": [1, None, f"{char}"]}
    for indent in (None, 2):
        text = json_for_terminal(value, indent=indent)
        assert json.loads(text) == value
        layout = "\n" if indent else ""  # the line breaks of the indentation itself
        assert all(c not in text for c in UNSAFE + ["\u2028", "\u2029"] if c != layout)


def test_json_for_terminal_keeps_other_unicode_readable() -> None:
    assert json_for_terminal(["café", "東京"]) == '["café", "東京"]'
    assert json_for_terminal({"t": object()}, default=lambda o: "obj") == '{"t": "obj"}'


@pytest.mark.parametrize("text", ["=1+1", "=HYPERLINK(\"http://x\",\"y\")", "+1", "-1", "@SUM(A1)",
                                  "\t=1", "-", "=", "@"])
def test_spreadsheet_neutralises_formula_starts(text: str) -> None:
    assert for_spreadsheet(text) == "'" + text


@pytest.mark.parametrize("text", ["a=1", "https://x/a.jpg", "1-2", " =1", "'=1", "café", ""])
def test_spreadsheet_leaves_ordinary_text(text: str) -> None:
    assert for_spreadsheet(text) == text


@pytest.mark.parametrize("value", [None, 3, 2.5, True])
def test_spreadsheet_passes_non_text(value: object) -> None:
    assert for_spreadsheet(value) is value


def test_spreadsheet_escapes_control_bytes_but_keeps_line_breaks_and_tabs() -> None:
    assert for_spreadsheet("a\x00b\x1bc\x7fd\u009be") == "a\\x00b\\x1bc\\x7fd\\x9be"
    assert for_spreadsheet("line 1\nline 2\r\nx\ty") == "line 1\nline 2\\x0d\nx\ty"
    # No longer formulas: the first character is a backslash now.
    assert for_spreadsheet("\x00=1") == "\\x00=1"
    assert for_spreadsheet("\r=1") == "\\x0d=1"


def test_spreadsheet_cells_round_trip_through_csv() -> None:
    cells = [for_spreadsheet(t) for t in ("=1+1", "a,\"b\"\nc", "\r=cmd", "x\ry", 7)]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    assert list(csv.reader(io.StringIO(buffer.getvalue(), newline=""))) == [[
        "'=1+1", "a,\"b\"\nc", "\\x0d=cmd", "x\\x0dy", "7"]]
    assert all(not str(c).startswith(FORMULA_STARTS) for c in cells)


@pytest.mark.parametrize("url, shown", [
    ("https://user:pass@host/x.jpg", "https://***@host/x.jpg"),
    ("https://user@host/x.jpg", "https://***@host/x.jpg"),
    ("https://:pass@host:8443/x.jpg", "https://***@host:8443/x.jpg"),
    ("HTTP://U:P@Host/x", "HTTP://***@Host/x"),
    ("https://me@mail.com:secret@host/x.jpg", "https://***@host/x.jpg"),
    ("https://u:p%40ss@[::1]:8080/x", "https://***@[::1]:8080/x"),
    ("https://host/a@b.jpg", "https://host/a@b.jpg"),
    ("https://host/x.jpg?u=a@b", "https://host/x.jpg?u=a@b"),
    ("https://host/x.jpg#a@b", "https://host/x.jpg#a@b"),
    ("https://host\\@x", "https://host\\@x"),
    ("https://host/x.jpg", "https://host/x.jpg"),
    ("mailto:me@example.com", "mailto:me@example.com"),
    ("redirect to http://a:b@c/d, then https://e:f@g/h", "redirect to http://***@c/d, then "
                                                         "https://***@g/h"),
    ("InvalidURL: ftp://u:p@h/", "InvalidURL: ftp://***@h/"),
])
def test_redact_userinfo(url: str, shown: str) -> None:
    assert redact_userinfo(url) == shown
    assert redact_userinfo(shown) == shown


def test_lost_userinfo_knows_a_redacted_url() -> None:
    assert lost_userinfo(redact_userinfo("https://u:p@host/x.jpg"))
    assert lost_userinfo("HTTP://***@host/x")
    for url in ("https://host/x.jpg", "https://u:p@host/x", "https://host/***@x", None, ""):
        assert not lost_userinfo(url)
