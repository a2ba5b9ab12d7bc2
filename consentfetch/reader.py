"""Input URL lists → shards of rows, streamed.

An input is a parquet, csv, tsv, txt (one URL a line) or jsonl file, optionally
compressed (``.gz``, ``.bz2``, ``.xz``; ``.zst`` when fsspec can decompress
it), given as a local path, an fsspec URL (``s3://``, ``memory://``, ...) or a
directory whose files of the format are read in name order as one stream.

Memory stays bounded by one shard of rows however large the input is: files
are read batch by batch (parquet) or line by line (the text formats), never
whole. Rows the reader cannot make sense of (a jsonl line that is not a JSON
object, a csv record the parser rejects) are not dropped and do not raise: they
become :class:`InputRow` values with ``url=None`` and an ``error``, so the
pipeline can give them an audit row like every other input row. URLs are not
judged here.

Problems a caller can act on (missing file, unknown format, missing column,
unreadable file) raise :class:`~consentfetch.errors.InputError`.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import lzma
import math
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from fsspec.utils import infer_compression

from .csvrecords import CsvRecord, csv_records
from .errors import ConfigError, InputError

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

FORMATS = ("parquet", "csv", "tsv", "txt", "jsonl")

_SUFFIX_FORMATS = {
    ".parquet": "parquet", ".pq": "parquet",
    ".csv": "csv", ".tsv": "tsv", ".txt": "txt",
    ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
}
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".xz")
_PARQUET_BATCH = 10_000
_PARQUET_BUFFER = 1 << 20  # bytes: stream column chunks instead of reading them whole
_MAX_LINE_CHARS = 4 << 20  # a txt/jsonl line longer than this is an error row
_TEXT_ENCODING = "utf-8-sig"  # strips a byte-order mark

# what reading a broken or truncated file raises (gzip/bz2 errors are OSErrors)
_READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError, EOFError, zlib.error, lzma.LZMAError, pa.ArrowException)


@dataclass(frozen=True, slots=True)
class InputRow:
    """One input row: the URL, its caption and the extra columns to keep."""

    url: str | None  # None when missing, null or malformed
    caption: str | None
    extra: dict[str, Any]  # the save_additional_columns values, by name
    error: str | None = None  # why the row is malformed, if it is


@dataclass(slots=True)
class ShardInput:
    """The rows of one shard, in input order.

    ``indices`` is set when the rows are a subset of a shard that already
    exists (``--retry-failed``): row ``i`` keeps its index ``indices[i]``, and
    so its key, and the shard's other rows and samples are carried over.
    """

    shard_id: int
    rows: list[InputRow]
    indices: list[int] | None = None


@dataclass(frozen=True, slots=True)
class _Columns:
    """Which columns to read, and how a file is named in row errors."""

    url: str
    caption: str | None
    extra: tuple[str, ...]
    where: str = ""  # "" for a single file, "name.jsonl " inside a directory

    def for_file(self, name: str) -> _Columns:
        return _Columns(self.url, self.caption, self.extra, f"{name} ")

    def needed(self) -> list[str]:
        names = [self.url, *([self.caption] if self.caption else []), *self.extra]
        return list(dict.fromkeys(names))

    def error_row(self, lineno: int, message: str) -> InputRow:
        return InputRow(None, None, dict.fromkeys(self.extra),
                        f"{self.where}line {lineno}: {message}")


# ------------------------------------------------------------------ formats


def _strip_compression(name: str) -> str:
    lower = name.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if lower.endswith(suffix):
            return lower[: -len(suffix)]
    return lower


def _suffix_format(name: str) -> str | None:
    """The format a file name says, ignoring a compression suffix; None if none."""
    _, ext = os.path.splitext(_strip_compression(name))
    return _SUFFIX_FORMATS.get(ext)


def _check_explicit(input_format: str) -> str:
    if input_format not in FORMATS:
        raise InputError(f"unknown input format {input_format!r}: "
                         f"expected one of {', '.join(FORMATS)}")
    return input_format


def _is_hidden(name: str) -> bool:
    base = name.rstrip("/").rsplit("/", 1)[-1]
    return base.startswith((".", "_"))  # .crc files, Spark's _SUCCESS


def _list_dir(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    entries = fs.ls(root, detail=True)
    files = [e["name"] for e in entries if e.get("type") == "file"]
    return sorted(f for f in files if not _is_hidden(f))


def _dir_format(path: str, files: Sequence[str]) -> str:
    found = {fmt for f in files if (fmt := _suffix_format(f)) is not None}
    if not found:
        raise InputError(f"{path}: directory holds no file of a known format "
                         f"({', '.join(sorted(_SUFFIX_FORMATS))}); pass input_format")
    if len(found) > 1:
        raise InputError(f"{path}: directory mixes formats ({', '.join(sorted(found))}); "
                         "pass input_format to choose one")
    return found.pop()


def _open_fs(path: str, storage_options: dict[str, Any] | None
             ) -> tuple[fsspec.AbstractFileSystem, str]:
    try:
        return url_to_fs(path, **(storage_options or {}))
    except (ImportError, ValueError, OSError) as exc:
        raise InputError(f"{path}: cannot open: {exc}") from exc


def _must_exist(fs: fsspec.AbstractFileSystem, root: str, path: str) -> None:
    try:
        found = fs.exists(root)
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc}") from exc
    if not found:
        raise InputError(f"{path}: input file not found")


def detect_format(path: str | os.PathLike[str], input_format: str | None = None, *,
                  storage_options: dict[str, Any] | None = None) -> str:
    """The input format: ``input_format`` if given, else from the file name.

    A compression suffix is ignored (``.tsv.gz`` → tsv). For a directory, the
    format of the files inside it. Unknown or mixed → :class:`InputError`.
    """
    if input_format is not None:
        return _check_explicit(input_format)
    text = os.fspath(path)
    fmt = _suffix_format(text.rstrip("/"))
    if fmt is not None:
        return fmt
    fs, root = _open_fs(text, storage_options)
    _must_exist(fs, root, text)
    if fs.isdir(root):
        return _dir_format(text, _list_dir(fs, root))
    raise InputError(f"{text}: unknown input format (expected a name ending in "
                     f"{', '.join(sorted(_SUFFIX_FORMATS))}, optionally "
                     f"+ {', '.join(_COMPRESSION_SUFFIXES)}); pass input_format")


# ------------------------------------------------------------------- values


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _to_text(value: Any) -> str | None:
    """A cell as text: None/NaN → None, bytes decoded, containers as JSON."""
    if _is_null(value):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _to_url(value: Any) -> str | None:
    text = _to_text(value)
    return None if text is None else text.strip()


def _json_extra(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


# ------------------------------------------------------------------ parquet


def _parquet_file(f: IO[bytes]) -> pq.ParquetFile:
    return pq.ParquetFile(f, buffer_size=_PARQUET_BUFFER)


def _parquet_rows(f: IO[bytes], cols: _Columns, batch_size: int) -> Iterator[InputRow]:
    pf = _parquet_file(f)
    for batch in pf.iter_batches(batch_size=batch_size, columns=cols.needed()):
        yield from _batch_rows(batch, cols)


def _batch_rows(batch: pa.RecordBatch, cols: _Columns) -> Iterator[InputRow]:
    values = {name: batch.column(name).to_pylist() for name in cols.needed()}
    urls = values[cols.url]
    captions = values[cols.caption] if cols.caption else itertools.repeat(None)
    extras = [values[name] for name in cols.extra]
    for i, (url, caption) in enumerate(zip(urls, captions)):
        extra = {name: column[i] for name, column in zip(cols.extra, extras)}
        yield InputRow(_to_url(url), _to_text(caption), extra)


def _parquet_schema(f: IO[bytes], path: str) -> tuple[pa.Schema, int]:
    try:
        pf = _parquet_file(f)
        return pf.schema_arrow, pf.metadata.num_rows
    except _READ_ERRORS as exc:
        raise InputError(f"{path}: not a readable parquet file: {exc}") from exc


def _unify(schemas: Sequence[pa.Schema], path: str) -> pa.Schema:
    try:
        return pa.unify_schemas(list(schemas), promote_options="permissive")
    except pa.ArrowException as exc:
        raise InputError(f"{path}: the parquet files' schemas conflict: {exc}") from exc


# ---------------------------------------------------------------- text files


def _text(f: IO[bytes], newline: str | None = None) -> io.TextIOWrapper:
    return io.TextIOWrapper(f, encoding=_TEXT_ENCODING, errors="replace", newline=newline)


def _lines(text: io.TextIOWrapper) -> Iterator[tuple[int, str | None]]:
    """(line number, line) pairs; ``None`` for a line too long to keep in memory."""
    for lineno in itertools.count(1):
        line = text.readline(_MAX_LINE_CHARS)
        if not line:
            return
        if len(line) == _MAX_LINE_CHARS and not line.endswith("\n"):
            while (rest := text.readline(_MAX_LINE_CHARS)) and not rest.endswith("\n"):
                pass
            yield lineno, None
        else:
            yield lineno, line


def _too_long(cols: _Columns, lineno: int) -> InputRow:
    return cols.error_row(lineno, f"line longer than {_MAX_LINE_CHARS} characters")


def _txt_rows(f: IO[bytes], cols: _Columns) -> Iterator[InputRow]:
    for lineno, line in _lines(_text(f)):
        if line is None:
            yield _too_long(cols, lineno)
        elif line.strip():
            yield InputRow(line.strip(), None, {})


def _jsonl_rows(f: IO[bytes], cols: _Columns) -> Iterator[InputRow]:
    for lineno, line in _lines(_text(f)):
        if line is None:
            yield _too_long(cols, lineno)
        elif line.strip():
            yield _jsonl_row(line, lineno, cols)


def _jsonl_row(line: str, lineno: int, cols: _Columns) -> InputRow:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return cols.error_row(lineno, f"invalid JSON: {exc.msg} (column {exc.colno})")
    except RecursionError:
        return cols.error_row(lineno, "invalid JSON: nested too deeply")
    if not isinstance(obj, dict):
        return cols.error_row(lineno, f"not a JSON object (got {type(obj).__name__})")
    caption = obj.get(cols.caption) if cols.caption else None
    extra = {name: _json_extra(obj.get(name)) for name in cols.extra}
    return InputRow(_to_url(obj.get(cols.url)), _to_text(caption), extra)


def _csv_records(f: IO[bytes], delimiter: str) -> Iterator[CsvRecord]:
    return csv_records(_text(f, newline=""), delimiter=delimiter, max_chars=_MAX_LINE_CHARS)


def _read_header(records: Iterator[CsvRecord], path: str) -> list[str]:
    for record in records:
        if record.error is not None:
            raise InputError(f"{path}: cannot parse the header row: {record.error}")
        if record.cells:  # csv yields [] for blank lines before the header
            return record.cells
    raise InputError(f"{path}: empty file, expected a header row")


def _csv_rows(f: IO[bytes], cols: _Columns, delimiter: str, path: str) -> Iterator[InputRow]:
    records = _csv_records(f, delimiter)
    header = _read_header(records, path)
    _require_columns(header, cols, path)
    index = {name: header.index(name) for name in cols.needed()}
    for record in records:
        if record.cells is None:
            yield cols.error_row(record.line, record.error or "malformed CSV record")
        elif record.cells and (len(record.cells) > 1 or record.cells[0].strip()):
            yield _csv_row(record.cells, index, cols)


def _csv_row(record: list[str], index: dict[str, int], cols: _Columns) -> InputRow:
    def cell(name: str) -> str | None:
        i = index[name]
        return record[i] if i < len(record) else None

    caption = cell(cols.caption) if cols.caption else None
    extra = {name: cell(name) for name in cols.extra}
    return InputRow(_to_url(cell(cols.url)), caption, extra)


def _require_columns(available: Sequence[str], cols: _Columns, path: str) -> None:
    missing = [name for name in cols.needed() if name not in available]
    if missing:
        names = ", ".join(repr(m) for m in missing)
        raise InputError(f"{path}: missing column(s) {names}; "
                         f"the file has {', '.join(repr(a) for a in available)}")


# -------------------------------------------------------------------- source


class InputSource:
    """An input URL list, validated up front and read shard by shard.

    Raises :class:`InputError` at construction when the input does not exist,
    its format is unknown, or (parquet, csv, tsv) a needed column is missing.
    jsonl keys cannot be checked without reading the file: a missing key gives
    ``None``. :meth:`shards` can be called more than once; each call re-reads.
    """

    format: str
    extra_fields: list[pa.Field]
    total_rows: int | None

    def __init__(self, path: str | os.PathLike[str], *, input_format: str | None = None,
                 url_col: str = "url", caption_col: str | None = None,
                 additional_columns: Sequence[str] = (), shard_size: int = 10_000,
                 storage_options: dict[str, Any] | None = None) -> None:
        if not isinstance(shard_size, int) or shard_size < 1:
            raise ConfigError(f"--shard-size: a positive integer (got {shard_size!r})")
        self.path = os.fspath(path)
        self.shard_size = shard_size
        self._fs, root = _open_fs(self.path, storage_options)
        _must_exist(self._fs, root, self.path)
        self._is_dir = bool(self._fs.isdir(root))
        self.format = self._detect(root, input_format)
        self._files = self._select_files(root, explicit=input_format is not None)
        extra = tuple(dict.fromkeys(additional_columns))
        self._cols = _Columns(url_col, caption_col, extra)
        self.total_rows = None
        self.extra_fields = self._validate()
        logger.debug("input %s: %s, %d file(s), %s rows", self.path, self.format,
                     len(self._files), self.total_rows)

    # -- set-up

    def _detect(self, root: str, input_format: str | None) -> str:
        if input_format is not None:
            return _check_explicit(input_format)
        if self._is_dir:
            return _dir_format(self.path, _list_dir(self._fs, root))
        return detect_format(self.path)

    def _select_files(self, root: str, *, explicit: bool) -> list[str]:
        files = _dir_files(self._fs, root, self.format, explicit) if self._is_dir else [root]
        if not files:
            raise InputError(f"{self.path}: directory holds no {self.format} file")
        for name in files:
            _check_compression(name, self.path)
        return files

    def _validate(self) -> list[pa.Field]:
        if self.format == "parquet":
            return self._validate_parquet()
        if self.format in ("csv", "tsv"):
            self._validate_csv()
        elif self.format == "txt" and (self._cols.caption or self._cols.extra):
            named = [c for c in (self._cols.caption, *self._cols.extra) if c]
            raise InputError(f"{self.path}: a txt input has no columns, so it cannot have "
                             f"{', '.join(repr(n) for n in named)}")
        return [pa.field(name, pa.string()) for name in self._cols.extra]

    def _validate_parquet(self) -> list[pa.Field]:
        schemas, total = [], 0
        for name in self._files:
            with self._open(name) as f:
                schema, rows = _parquet_schema(f, self._label(name))
            _require_columns(schema.names, self._cols, self._label(name))
            schemas.append(schema)
            total += rows
        self.total_rows = total
        unified = _unify(schemas, self.path)
        return [unified.field(name) for name in self._cols.extra]

    def _validate_csv(self) -> None:
        for name in self._files:
            with self._open(name) as f:
                header = self._translate(
                    lambda: _read_header(_csv_records(f, self._delimiter), self._label(name)),
                    name)
            _require_columns(header, self._cols, self._label(name))

    # -- reading

    @property
    def _delimiter(self) -> str:
        return "\t" if self.format == "tsv" else ","

    def _label(self, name: str) -> str:
        return name if self._is_dir else self.path

    def _open(self, name: str) -> IO[bytes]:
        try:
            return self._fs.open(name, "rb", compression="infer")
        except _READ_ERRORS as exc:
            raise InputError(f"{self._label(name)}: cannot open: {exc}") from exc

    def _translate(self, read: Callable[[], _T], name: str) -> _T:
        """``read()``, with a broken or truncated file turned into InputError."""
        try:
            return read()
        except InputError:
            raise
        except _READ_ERRORS as exc:
            raise InputError(f"{self._label(name)}: cannot read: {exc}") from exc

    def _file_rows(self, name: str) -> Iterator[InputRow]:
        cols = self._cols.for_file(name.rsplit("/", 1)[-1]) if self._is_dir else self._cols
        with self._open(name) as f:
            if self.format == "parquet":
                yield from _parquet_rows(f, cols, min(self.shard_size, _PARQUET_BATCH))
            elif self.format in ("csv", "tsv"):
                yield from _csv_rows(f, cols, self._delimiter, self._label(name))
            elif self.format == "jsonl":
                yield from _jsonl_rows(f, cols)
            else:
                yield from _txt_rows(f, cols)

    def _rows(self) -> Iterator[InputRow]:
        for name in self._files:
            logger.debug("reading %s", name)
            rows = self._file_rows(name)
            while True:
                row = self._translate(lambda: next(rows, None), name)
                if row is None:
                    break
                yield row

    def shards(self) -> Iterator[ShardInput]:
        """Shards 0, 1, 2, ... of ``shard_size`` rows each (the last may be shorter)."""
        return _chunk(self._rows(), self.shard_size)


def _chunk(rows: Iterable[InputRow], size: int) -> Iterator[ShardInput]:
    it = iter(rows)
    for shard_id in itertools.count():
        shard = ShardInput(shard_id, list(itertools.islice(it, size)))
        if not shard.rows:
            return
        yield shard
        del shard  # so the caller's previous shard is not kept while the next is read


def _dir_files(fs: fsspec.AbstractFileSystem, root: str, fmt: str, explicit: bool
               ) -> list[str]:
    """The files of format ``fmt`` in a directory, by name.

    With an explicit format and no file named for it, the files whose names
    say no known format (``part-00000``, ``urls.list``) are taken instead.
    """
    files = _list_dir(fs, root)
    matching = [f for f in files if _suffix_format(f) == fmt]
    if not matching and explicit:
        matching = [f for f in files if _suffix_format(f) is None]
    return matching


def _check_compression(name: str, path: str) -> None:
    lower = name.lower()
    suffix = next((s for s in _COMPRESSION_SUFFIXES if lower.endswith(s)), None)
    if suffix is not None and infer_compression(name) is None:
        raise InputError(f"{path}: cannot decompress {suffix} files: fsspec has no codec "
                         f"for it (for .zst, install the zstandard package)")
