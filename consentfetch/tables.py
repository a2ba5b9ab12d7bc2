"""Tabular files, read one way: URL lists (:mod:`.reader`) and consent lists (:mod:`.lists`).

A table is a parquet, csv, tsv, txt (one value a line) or jsonl file,
optionally compressed (``.gz``, ``.bz2``, ``.xz``; ``.zst`` when fsspec can
decompress it), local or behind any fsspec URL. This module owns what is the
same for every such file: the format a name says, compression, opening,
text decoding (UTF-8, a byte-order mark stripped), bounded lines, JSON lines,
CSV records (:mod:`.csvrecords`), parquet batches, and what reading a broken
file raises. What a row *means* is the caller's.

Every file is read as a stream of :class:`Record` values, each saying where
it stands (``line 12``, ``row 3``) and holding its values by column, or why
it could not be read (an invalid JSON line, a CSV record the parser rejects,
a line too long to hold): a bad record is data, never an exception. Memory is
bounded by ``max_chars`` per record and one parquet batch, whatever the file's
size.
"""

from __future__ import annotations

import io
import json
import logging
import lzma
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import IO, Any, NamedTuple

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from fsspec.utils import infer_compression

from .csvrecords import csv_records
from .errors import InputError

logger = logging.getLogger(__name__)

FORMATS = ("parquet", "csv", "tsv", "txt", "jsonl")
SUFFIX_FORMATS = {
    ".parquet": "parquet", ".pq": "parquet",
    ".csv": "csv", ".tsv": "tsv", ".txt": "txt",
    ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
}
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".xz")
LINE = "line"  # the one column of a txt record: the line, stripped
_TEXT_ENCODING = "utf-8-sig"  # strips a byte-order mark
_PARQUET_BUFFER = 1 << 20  # bytes: stream column chunks instead of reading them whole
_COUNT_CHUNK = 1 << 20  # bytes read at a time when counting lines
_ASCII_SPACE = b" \t\r\f\v"
# a newline that ends a blank line (one of ASCII spaces only): the line before the next
_BLANK_LINE = re.compile(rb"\n[ \t\r\f\v]*(?=\n)")

# what reading a broken, truncated or undecodable file raises (gzip/bz2 errors are OSErrors)
READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError, EOFError, UnicodeDecodeError, zlib.error, lzma.LZMAError, pa.ArrowException)
# what opening one may raise too: an unknown protocol, a missing driver
OPEN_ERRORS: tuple[type[BaseException], ...] = (*READ_ERRORS, ValueError, ImportError)


class Record(NamedTuple):
    """One record of a table: its values by column, or why it could not be read.

    A named tuple: millions are made for one big list, and it is the cheapest
    immutable record to make.
    """

    where: str  # "line 12" (text formats, where the record starts) or "row 3" (parquet)
    values: dict[str, Any] | None
    error: str | None = None


# ------------------------------------------------------------------- names


def compression_suffix(name: str) -> str | None:
    """The compression suffix ``name`` ends with (any case), or None."""
    lower = name.lower()
    return next((s for s in COMPRESSION_SUFFIXES if lower.endswith(s)), None)


def suffix_format(name: str, known: dict[str, str] | None = None) -> str | None:
    """The format a file name says, ignoring a compression suffix; None if none."""
    lower = name.lower()
    lower = lower.removesuffix(compression_suffix(lower) or "")
    return (SUFFIX_FORMATS if known is None else known).get(os.path.splitext(lower)[1])


def check_compression(name: str, label: str) -> None:
    """Raise :class:`InputError` (naming ``label``) when ``name`` is compressed in a
    way fsspec cannot undo."""
    suffix = compression_suffix(name)
    if suffix is not None and infer_compression(name) is None:
        raise InputError(f"{label}: cannot decompress {suffix} files: fsspec has no codec "
                         f"for it (for .zst, install the zstandard package)")


# ----------------------------------------------------------------- opening


def filesystem(path: str, storage_options: dict[str, Any] | None
               ) -> tuple[fsspec.AbstractFileSystem, str]:
    """The file system of ``path`` and the path inside it (raises :data:`OPEN_ERRORS`)."""
    fs, inner = url_to_fs(path, **(storage_options or {}))
    return fs, inner


def open_binary(fs: fsspec.AbstractFileSystem, path: str) -> IO[bytes]:
    """``path`` opened for reading, decompressed as its name says."""
    opened: IO[bytes] = fs.open(path, "rb", compression="infer")
    return opened


def text(f: IO[bytes], *, strict: bool, newline: str | None = None) -> io.TextIOWrapper:
    """``f`` as UTF-8 text; not ``strict``: undecodable bytes become lone surrogates
    (``surrogateescape``), so a URL holding them is refused with its bytes shown rather
    than requested under a URL the input never held (U+FFFD)."""
    return io.TextIOWrapper(f, encoding=_TEXT_ENCODING,
                            errors="strict" if strict else "surrogateescape", newline=newline)


def lines(stream: io.TextIOBase, max_chars: int) -> Iterator[tuple[int, str | None]]:
    """(line number, line) pairs; ``None`` for a line longer than ``max_chars``, which
    is skipped without being held in memory."""
    lineno = 0
    while line := stream.readline(max_chars):
        lineno += 1
        if len(line) == max_chars and not line.endswith("\n"):
            while (rest := stream.readline(max_chars)) and not rest.endswith("\n"):
                pass
            yield lineno, None
        else:
            yield lineno, line


def parquet_file(f: IO[bytes]) -> pq.ParquetFile:
    """A parquet file read a column chunk at a time (a compressed one too: it is
    decompressed as a stream, never whole)."""
    return pq.ParquetFile(f, buffer_size=_PARQUET_BUFFER)


# ----------------------------------------------------------------- counting


class LineCount(NamedTuple):
    """What one binary scan of a text file found (see :func:`count_lines`)."""

    lines: int  # non-blank lines, a last one without a newline included
    quoted_newlines: int  # newlines between double quotes (counted only if asked)
    scanned: int  # bytes read
    complete: bool  # the whole file was read
    lone_cr: bool  # a carriage return not before a newline: lines the count cannot see


def count_lines(f: IO[bytes], *, max_bytes: int, quotes: bool = False) -> LineCount:
    """Count the non-blank lines of ``f`` in a binary scan of at most ``max_bytes``,
    a chunk of :data:`_COUNT_CHUNK` bytes at a time (memory stays bounded by one
    chunk, however long a line is). A line of ASCII spaces is blank, as the readers
    skip it. ``quotes``: also count the newlines inside double quotes (csv), which
    do not end a record; a well-formed file's quotes pair up."""
    lines = quoted = scanned = 0
    carry = b"\n"  # the newline before the file; + b"x" while the open line has content
    inside = lone_cr = False
    while (want := min(_COUNT_CHUNK, max_bytes - scanned)) > 0:
        chunk = f.read(want)
        if not chunk:
            break
        scanned += len(chunk)
        buf = carry + chunk
        lines += chunk.count(b"\n") - len(_BLANK_LINE.findall(buf))
        lone_cr = lone_cr or chunk[:-1].count(b"\r") > chunk.count(b"\r\n")
        if quotes and (inside or b'"' in chunk):
            parts = chunk.split(b'"')
            quoted += sum(part.count(b"\n") for part in parts[0 if inside else 1::2])
            inside ^= len(parts) % 2 == 0
        tail = buf[buf.rfind(b"\n") + 1:]
        carry = b"\n" + (b"x" if tail.strip(_ASCII_SPACE) else b"")
    complete = want > 0 or not f.read(1)
    if complete and carry != b"\n":
        lines += 1  # the last line, without a newline
    return LineCount(lines, quoted, scanned, complete, lone_cr)


# ----------------------------------------------------------------- records


def _too_long(lineno: int, max_chars: int) -> Record:
    return Record(f"line {lineno}", None, f"line longer than {max_chars} characters")


def txt_records(f: IO[bytes], *, max_chars: int, strict: bool) -> Iterator[Record]:
    """The non-blank lines, stripped, as ``{LINE: text}``."""
    for lineno, line in lines(text(f, strict=strict), max_chars):
        if line is None:
            yield _too_long(lineno, max_chars)
        elif line.strip():
            yield Record(f"line {lineno}", {LINE: line.strip()})


def json_object(line: str) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object on ``line``, or why there is none."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg} (column {exc.colno})"
    except RecursionError:
        return None, "invalid JSON: nested too deeply"
    if not isinstance(obj, dict):
        return None, f"not a JSON object (got {type(obj).__name__})"
    return obj, None


def jsonl_records(f: IO[bytes], *, max_chars: int, strict: bool,
                  label: str = "the file") -> Iterator[Record]:
    """The JSON object of every non-blank line. A file that starts a JSON array is
    refused (InputError): it is one JSON document, not JSON Lines, and reading it as
    lines would make rows of its fragments."""
    first = True
    for lineno, line in lines(text(f, strict=strict), max_chars):
        if line is None:
            yield _too_long(lineno, max_chars)
        elif line.strip():
            if first and _starts_a_json_array(line):
                raise InputError(
                    f"{label} holds a JSON array, not JSON Lines (one object per line); "
                    f"convert it, e.g. jq -c '.[]' IN.json > OUT.jsonl")
            first = False
            obj, error = json_object(line)
            yield Record(f"line {lineno}", obj, error)


def json_cell(text: str) -> Any:
    """The value of a text cell holding JSON (a list column written to csv); raises
    ValueError when it is not JSON."""
    return json.loads(text)


def _starts_a_json_array(line: str) -> bool:
    """Whether a file's first line opens a JSON array of objects or strings (``[``,
    ``[{...``, ``["...``) or is one: a JSON document, not JSON Lines."""
    head = line.strip()
    if head == "[" or (head.startswith("[") and head[1:].lstrip()[:1] in ('{', '"')):
        return True
    return False


class CsvTable:
    """A csv/tsv file: its header row, read on opening, then its records."""

    def __init__(self, f: IO[bytes], *, label: str, delimiter: str, max_chars: int,
                 strict: bool) -> None:
        self._records = csv_records(text(f, strict=strict, newline=""), delimiter=delimiter,
                                    max_chars=max_chars)
        self._label = label
        self.header = self._read_header(label)
        self._index: dict[str, int] = {}
        for i, name in enumerate(self.header):
            self._index.setdefault(name, i)  # a repeated name: its first column

    def _read_header(self, label: str) -> list[str]:
        """The first non-blank record; ``[]`` for a file without one."""
        for record in self._records:
            if record.cells is None:
                raise InputError(f"{label}: cannot parse the header row: {record.error}")
            if record.cells:  # csv yields [] for blank lines before the header
                return record.cells
        return []

    def records(self) -> Iterator[Record]:
        """Every record after the header; blank ones skipped, short ones lack the last
        columns, long ones lose the fields past the header's (both counted, and said
        in one warning at the end)."""
        ragged = Counter[str]()
        for record in self._records:
            where = f"line {record.line}"
            cells = record.cells
            if cells is None:
                yield Record(where, None, record.error or "malformed CSV record")
            elif cells and (len(cells) > 1 or cells[0].strip()):
                if len(cells) != len(self.header):
                    ragged["more" if len(cells) > len(self.header) else "fewer"] += 1
                yield Record(where, {name: cells[i] for name, i in self._index.items()
                                     if i < len(cells)})
        if ragged:
            logger.warning("%s: %d record(s) with more fields than the header's %d (the extra "
                           "fields were dropped), %d with fewer (the missing columns are "
                           "empty)", self._label, ragged["more"], len(self.header),
                           ragged["fewer"])


def parquet_records(pf: pq.ParquetFile, columns: Sequence[str],
                    batch_size: int) -> Iterator[Record]:
    """``columns`` of every row, ``batch_size`` rows read at a time."""
    row = 0
    names = list(columns)
    for batch in pf.iter_batches(batch_size=batch_size, columns=names):
        values = [batch.column(name).to_pylist() for name in names]
        for cells in zip(*values, strict=True):
            yield Record(f"row {row}", dict(zip(names, cells, strict=False)))
            row += 1
