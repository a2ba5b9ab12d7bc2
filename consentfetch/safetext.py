"""Hostile text on its way to people: terminals, JSON, spreadsheets, stored URLs.

Whatever a site sends or an input row holds (URLs, captions, evidence, header
values, robots.txt lines) may be aimed at the reader's software rather than
the reader: terminal escape sequences that repaint the screen (a forged
verdict), bidirectional-override characters that reorder what is shown,
spreadsheet formulas, or credentials copied from an input URL. Each function
here makes text safe for one destination. They are pure, and they are applied
where text leaves the program; the stored data keeps the text as it came,
except for URL credentials, which are never stored at all
(:func:`redact_userinfo`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

# C0 and C1 controls (ESC, CSI U+009B, BEL, CR, ...) and the Unicode
# bidirectional embeddings, overrides and isolates (U+202A-U+202E,
# U+2066-U+2069), which reorder the characters a reader sees.
_BIDI = "\u202a-\u202e\u2066-\u2069"
_TERMINAL_UNSAFE = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_BIDI}]")
# What json.dumps(ensure_ascii=False) leaves raw: it escapes U+0000-U+001F
# only. U+2028/U+2029 are line breaks to many viewers.
_JSON_UNSAFE = re.compile(f"[\\x7f-\\x9f{_BIDI}\u2028\u2029]")
# In a spreadsheet cell: the controls other than tab and line feed, which a
# quoted CSV cell holds as text. A carriage return is escaped too: csv.writer
# quotes only the characters of its line terminator, so a bare CR would end
# the row for the spreadsheet.
_CELL_UNSAFE = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_BIDI}]")
# A cell starting with one of these is a formula to Excel, LibreOffice and
# Google Sheets (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# scheme "://" userinfo "@": the userinfo runs to the last "@" before the
# host's end ("/", "\", "?", "#" or whitespace), as urlsplit and yarl read it.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\\?#\s]*@")
REDACTED_USERINFO = "***"
_REDACTED_URL = re.compile(r"(?i)[a-z][a-z0-9+.\-]*://\*\*\*@")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_terminal(text: str) -> str:
    """``text`` with every control character shown as ``\\xNN`` and every
    bidirectional override as ``\\uNNNN``: printable, one line, in order."""
    return _TERMINAL_UNSAFE.sub(_escape, text)


def json_for_terminal(value: Any, *, indent: int | None = None,
                      default: Callable[[Any], Any] | None = None) -> str:
    """``json.dumps(value, ensure_ascii=False)`` with the characters it leaves raw
    that a terminal acts on (DEL, the C1 controls, bidi overrides, U+2028/9)
    written as ``\\uNNNN`` escapes: the same JSON value, safe to print."""
    text = json.dumps(value, ensure_ascii=False, indent=indent, default=default)
    # These characters can only stand inside JSON strings, where \uNNNN means them.
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def for_spreadsheet(value: Any) -> Any:
    """A CSV cell a spreadsheet will show, not run: control characters but tab
    and line feed as ``\\xNN`` (so a carriage return cannot start a cell nor
    end a row), and a ``'`` before a text that starts with ``=``, ``+``,
    ``-``, ``@`` or tab. Values that are not text pass unchanged."""
    if not isinstance(value, str):
        return value
    text = _CELL_UNSAFE.sub(_escape, value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def redact_userinfo(text: str) -> str:
    """``text`` with the user name and password of every URL in it replaced by
    ``***``: ``https://user:pass@host/a.jpg`` → ``https://***@host/a.jpg``."""
    return _USERINFO.sub(rf"\g<1>{REDACTED_USERINFO}@", text)


def lost_userinfo(url: str | None) -> bool:
    """Whether ``url`` is a stored URL whose credentials :func:`redact_userinfo`
    removed (the input row still has them)."""
    return url is not None and _REDACTED_URL.match(url) is not None
