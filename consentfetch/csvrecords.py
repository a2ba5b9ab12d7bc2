"""CSV records, one per record of the file, whatever a cell holds.

:func:`csv.reader` gives up on a field longer than ``csv.field_size_limit()``
(131,072 characters unless someone raised it) by raising in the middle of the
record, and the next call starts a new record *inside* the quoted field: a long
caption holding newlines and URLs became several rows, and its URLs were
downloaded. The same happens after any other parse error inside a quoted field.

:func:`csv_records` keeps :mod:`csv`'s parser (so every record it accepts reads
exactly as before) but feeds it the file line by line while following, with
:func:`_scan`, the same state machine for the one thing that matters: where
the record ends. After a parse error the rest of the record is skipped, and
the record becomes one error. A record longer than ``max_chars`` is skipped
without being held in memory, and also becomes one error. So one record of
the file is always one result, and memory is bounded by ``max_chars``.

The process-wide ``csv.field_size_limit`` is left alone (another module's
global): a field above it is refused with a message that names the limit.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

# The states of CPython's csv parser (Modules/_csv.c) that matter between
# characters; default dialect: quotechar '"', doublequote, no escapechar, not strict.
_START, _FIELD, _QUOTED, _QUOTE_IN_QUOTED, _END = range(5)
_QUOTED_BODY = re.compile(r'[^"]*(?:""[^"]*)*')


@dataclass(frozen=True)
class CsvRecord:
    """One record: its cells, or why it was refused. ``line`` is where it starts."""

    line: int
    cells: list[str] | None
    error: str | None = None


class _Skip(Exception):
    """Raised through csv.reader by the line feed: the record is too long."""


@lru_cache(maxsize=8)
def _unquoted_field(delimiter: str) -> re.Pattern[str]:
    return re.compile(f"[^{re.escape(delimiter)}\\r\\n]*")


def _match_end(pattern: re.Pattern[str], chunk: str, pos: int) -> int:
    match = pattern.match(chunk, pos)  # both patterns match the empty string
    return match.end() if match else pos


def _scan(chunk: str, state: int, delimiter: str) -> int:
    """The parser's state after ``chunk`` (``_END``: the record ended in it)."""
    if state == _START and '"' not in chunk and chunk.endswith(("\n", "\r")):
        return _END  # the common line: a whole record without quotes
    pos, n = 0, len(chunk)
    while pos < n:
        char = chunk[pos]
        if state == _QUOTED:
            pos = _match_end(_QUOTED_BODY, chunk, pos)
            if pos < n:  # a lone quote: the field's closing quote, or "" split off
                state, pos = _QUOTE_IN_QUOTED, pos + 1
        elif char in "\r\n":
            return _END  # outside quotes a line break ends the record
        elif state == _FIELD:
            pos = _match_end(_unquoted_field(delimiter), chunk, pos)
            if pos < n and chunk[pos] == delimiter:
                state, pos = _START, pos + 1
        elif char == delimiter:
            state, pos = _START, pos + 1
        elif char == '"' and state in (_START, _QUOTE_IN_QUOTED):
            state, pos = _QUOTED, pos + 1  # a field opens, or "" inside a quoted field
        else:
            state, pos = _FIELD, pos + 1
    return state


class _Feed:
    """The physical lines of a CSV text, for csv.reader, tracking record ends."""

    def __init__(self, text: io.TextIOBase, delimiter: str, max_chars: int) -> None:
        self._text = text
        self._delimiter = delimiter
        self._max = max_chars
        self.line = 0  # the line number of the last chunk read
        self.start = 1  # the line the current record starts on
        self._state = _END
        self._chars = 0
        self._line_done = True  # the last chunk ended its line

    def __iter__(self) -> _Feed:
        return self

    def _read(self, limit: int) -> str:
        chunk = self._text.readline(limit)
        if chunk:
            self.line += self._line_done
            self._line_done = chunk.endswith(("\n", "\r"))
            self._state = _scan(chunk, self._state, self._delimiter)
        return chunk

    def __next__(self) -> str:
        new_record = self._state == _END
        if new_record:
            self._state, self._chars = _START, 0
        line = self._read(self._max + 1)
        if not line:
            raise StopIteration
        if new_record:
            self.start = self.line
        self._chars += len(line)
        if self._chars > self._max:
            self.skip_record()
            raise _Skip
        if not self._line_done:
            self._state = _END  # the text ends without a line break
        return line

    def skip_record(self) -> None:
        """Read on, holding at most one chunk, to the end of the current record."""
        while self._state != _END and self._read(self._max):
            pass
        self._state = _END


def csv_records(text: io.TextIOBase, *, delimiter: str = ",",
                max_chars: int) -> Iterator[CsvRecord]:
    """Every record of ``text`` (opened with ``newline=""``), in order: its
    cells (``[]`` for a blank line, as csv.reader gives), or an error message
    for a record csv rejects or one longer than ``max_chars`` characters."""
    feed = _Feed(text, delimiter, max_chars)
    reader = csv.reader(feed, delimiter=delimiter)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except _Skip:
            yield CsvRecord(feed.start, None, f"record longer than {max_chars} characters")
            continue
        except csv.Error as exc:
            start = feed.start
            feed.skip_record()
            yield CsvRecord(start, None, f"malformed CSV record: {exc}")
            continue
        yield CsvRecord(feed.start, cells)
