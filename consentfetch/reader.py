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
unreadable file) raise :class:`~consentfetch.errors.InputError`. Files are
read through :mod:`~consentfetch.tables`; this module says what a row of a
URL list means.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import IO, Any, TypeVar

import fsspec
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from . import tables
from .errors import ConfigError, InputError
from .tables import FORMATS, SUFFIX_FORMATS, Record

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

__all__ = ["FORMATS", "InputRow", "InputSource", "ShardInput", "detect_format",
           "input_identity"]

_PARQUET_BATCH = 10_000
_MAX_LINE_CHARS = 4 << 20  # a line (a csv record) longer than this is an error row
# Bytes of a local text input scanned to count its rows (~0.35 s at the ~5 ms/MiB
# measured; csv with many quotes ~10 ms/MiB); past it the count is extrapolated
# from the file sizes. Every later file of a directory is sampled this much at least.
_COUNT_BYTES = 64 << 20
_COUNT_SAMPLE = 1 << 20


@dataclass(frozen=True, slots=True)
class InputRow:
    """One input row: the URL, its caption and the extra columns to keep."""

    url: str | None  # None when missing, null or malformed
    caption: str | None
    extra: dict[str, Any]  # the save_additional_columns values, by name
    error: str | None = None  # why the row is malformed, if it is
    expected_hash: str | None = None  # the --verify-hash column's value, if any
    boxes: tuple[tuple[float, float, float, float], ...] = ()  # --bbox-col, to blur


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
    hash: str | None = None  # the --verify-hash column
    bbox: str | None = None  # the --bbox-col column

    def for_file(self, name: str) -> _Columns:
        return _Columns(self.url, self.caption, self.extra, f"{name} ", self.hash, self.bbox)

    def needed(self) -> list[str]:
        names = [self.url, *([self.caption] if self.caption else []), *self.extra,
                 *([self.hash] if self.hash else []), *([self.bbox] if self.bbox else [])]
        return list(dict.fromkeys(names))

    def error_row(self, where: str, message: str) -> InputRow:
        return InputRow(None, None, dict.fromkeys(self.extra), f"{self.where}{where}: {message}")


# ------------------------------------------------------------------ formats


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
    found = {fmt for f in files if (fmt := tables.suffix_format(f)) is not None}
    if not found:
        raise InputError(f"{path}: directory holds no file of a known format "
                         f"({', '.join(sorted(SUFFIX_FORMATS))}); "
                         "give --input-format (input_format= in Python)")
    if len(found) > 1:
        raise InputError(f"{path}: directory mixes formats ({', '.join(sorted(found))}); "
                         "give --input-format (input_format= in Python) to choose one")
    return found.pop()


def input_identity(path: str, storage_options: dict[str, Any] | None = None) -> str:
    """What identifies an input whichever way it is spelled: a local path's real
    absolute path (``./urls.parquet``, ``/data/urls.parquet`` and a symlink to it
    are one input; a relative path is taken from the current directory), else
    the URL as fsspec normalises it (protocol + path). May hold credentials.

    Raises :class:`InputError` when no file system serves ``path``.
    """
    return _identity(*_open_fs(path, storage_options))


def _identity(fs: fsspec.AbstractFileSystem, root: str) -> str:
    if isinstance(fs, LocalFileSystem):
        return os.path.realpath(root)
    return str(fs.unstrip_protocol(root))


def _open_fs(path: str, storage_options: dict[str, Any] | None
             ) -> tuple[fsspec.AbstractFileSystem, str]:
    try:
        return tables.filesystem(path, storage_options)
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
    fmt = tables.suffix_format(text.rstrip("/"))
    if fmt is not None:
        return fmt
    fs, root = _open_fs(text, storage_options)
    _must_exist(fs, root, text)
    if fs.isdir(root):
        return _dir_format(text, _list_dir(fs, root))
    raise InputError(f"{text}: unknown input format (expected a name ending in "
                     f"{', '.join(sorted(SUFFIX_FORMATS))}, optionally "
                     f"+ {', '.join(tables.COMPRESSION_SUFFIXES)}); "
                     "give --input-format (input_format= in Python)")


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
        return bytes(value).decode("utf-8", errors="surrogateescape")  # see tables.text
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


# ------------------------------------------------------------------- rows


def _row(values: dict[str, Any], cols: _Columns, extra: Callable[[Any], Any]) -> InputRow:
    """A record's values as an input row; ``extra`` turns a kept column's value into
    what the audit stores."""
    caption = _to_text(values.get(cols.caption)) if cols.caption else None
    kept = {name: extra(values.get(name)) for name in cols.extra}
    expected = _to_text(values.get(cols.hash)) if cols.hash else None
    url = _to_url(values.get(cols.url))
    try:
        boxes = to_boxes(values.get(cols.bbox)) if cols.bbox else ()
    except ValueError as exc:  # never download a picture whose faces we cannot blur
        return InputRow(url, caption, kept, f"--bbox-col {cols.bbox}: {exc}")
    return InputRow(url, caption, kept, expected_hash=expected.strip().lower() if expected
                    else None, boxes=boxes)


def to_boxes(value: Any) -> tuple[tuple[float, float, float, float], ...]:
    """A ``--bbox-col`` cell as boxes: a list of ``[x0, y0, x1, y1]`` in relative
    coordinates (img2dataset's format; JSON text in csv/tsv). Null or empty: none.
    Anything else raises ValueError."""
    if _is_null(value):
        return ()
    if isinstance(value, str):
        value = tables.json_cell(value) if value.strip() else []
    if hasattr(value, "tolist"):  # numpy arrays from some parquet writers
        value = value.tolist()
    if not isinstance(value, list | tuple):
        raise ValueError(f"not a list of [x0, y0, x1, y1] boxes: {value!r:.80}")
    boxes = []
    for box in value:
        if not isinstance(box, list | tuple) or len(box) != 4 \
                or not all(isinstance(v, int | float) and math.isfinite(v) for v in box):
            raise ValueError(f"a box is not [x0, y0, x1, y1] numbers: {box!r:.80}")
        x0, y0, x1, y1 = (float(v) for v in box)
        boxes.append((x0, y0, x1, y1))
    return tuple(boxes)


def _txt_row(values: dict[str, Any], cols: _Columns, extra: Callable[[Any], Any]) -> InputRow:
    return InputRow(values[tables.LINE], None, {})


def _same(value: Any) -> Any:
    return value


_ROW_MAKERS: dict[str, tuple[Callable[[dict[str, Any], _Columns, Callable[[Any], Any]],
                                      InputRow], Callable[[Any], Any]]] = {
    "parquet": (_row, _same), "csv": (_row, _same), "tsv": (_row, _same),
    "jsonl": (_row, _json_extra), "txt": (_txt_row, _same),
}


def _parquet_schema(f: IO[bytes], path: str) -> tuple[pa.Schema, int]:
    try:
        pf = tables.parquet_file(f)
        return pf.schema_arrow, pf.metadata.num_rows
    except tables.READ_ERRORS as exc:
        raise InputError(f"{path}: not a readable parquet file: {exc}") from exc


def _unify(schemas: Sequence[pa.Schema], path: str) -> pa.Schema:
    try:
        return pa.unify_schemas(list(schemas), promote_options="permissive")
    except pa.ArrowException as exc:
        raise InputError(f"{path}: the parquet files' schemas conflict: {exc}") from exc


def _csv_table(f: IO[bytes], delimiter: str, path: str) -> tables.CsvTable:
    table = tables.CsvTable(f, label=path, delimiter=delimiter, max_chars=_MAX_LINE_CHARS,
                            strict=False)
    if not table.header:
        raise InputError(f"{path}: empty file, expected a header row")
    return table


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

    ``total_rows`` is the number of input rows: parquet's footers say it; a local,
    uncompressed text input is counted in a bounded binary scan (an estimate,
    ``total_is_estimate``, when a csv field holds a newline or the input is larger
    than the scan); remote or compressed text inputs: ``None``, unknown.
    """

    format: str
    extra_fields: list[pa.Field]
    total_rows: int | None
    total_is_estimate: bool

    def __init__(self, path: str | os.PathLike[str], *, input_format: str | None = None,
                 url_col: str = "url", caption_col: str | None = None,
                 additional_columns: Sequence[str] = (), shard_size: int = 10_000,
                 storage_options: dict[str, Any] | None = None,
                 hash_col: str | None = None, bbox_col: str | None = None) -> None:
        if not isinstance(shard_size, int) or shard_size < 1:
            raise ConfigError(f"--shard-size: a positive integer (got {shard_size!r})")
        self.path = os.fspath(path)
        self.shard_size = shard_size
        self._fs, root = _open_fs(self.path, storage_options)
        _must_exist(self._fs, root, self.path)
        self.identity = _identity(self._fs, root)
        self._is_dir = bool(self._fs.isdir(root))
        self.format = self._detect(root, input_format)
        self._files = self._select_files(root, explicit=input_format is not None)
        extra = tuple(dict.fromkeys(additional_columns))
        self._cols = _Columns(url_col, caption_col, extra, hash=hash_col, bbox=bbox_col)
        self.total_rows = None
        self.total_is_estimate = False
        self.extra_fields = self._validate()
        if self.format != "parquet":
            self._count_text()
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
            tables.check_compression(name, self.path)
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
                table = partial(_csv_table, f, self._delimiter, self._label(name))
                header = self._translate(table, name).header
            _require_columns(header, self._cols, self._label(name))

    def _count_text(self) -> None:
        """Set ``total_rows`` of a text input, when it can be counted cheaply."""
        why = self._uncountable()
        if why is None:
            self._scan_counts()
        else:
            logger.info("%s: %s, so its rows are not counted: no total or ETA in the "
                        "progress", self.path, why)

    def _uncountable(self) -> str | None:
        if not isinstance(self._fs, LocalFileSystem | MemoryFileSystem):
            return "a remote input"
        if any(tables.compression_suffix(name) for name in self._files):
            return "a compressed input"
        return None

    def _scan_counts(self) -> None:
        budget, total, estimate = _COUNT_BYTES, 0, False
        for name in self._files:
            with self._open(name) as f:
                found = self._translate(partial(
                    tables.count_lines, f, max_bytes=max(budget, _COUNT_SAMPLE),
                    quotes=self.format in ("csv", "tsv")), name)
            if found.lone_cr:
                logger.info("%s: lines end in a lone carriage return, so its rows are not "
                            "counted: no total or ETA in the progress", self._label(name))
                return
            budget -= found.scanned
            header = 1 if self.format in ("csv", "tsv") and found.lines else 0
            rows = max(0, found.lines - found.quoted_newlines - header)
            if not found.complete:
                rows = round(rows * self._fs.size(name) / max(1, found.scanned))
            estimate = estimate or not found.complete or found.quoted_newlines > 0
            total += rows
        self.total_rows, self.total_is_estimate = total, estimate

    # -- reading

    @property
    def _delimiter(self) -> str:
        return "\t" if self.format == "tsv" else ","

    def _label(self, name: str) -> str:
        return name if self._is_dir else self.path

    def _open(self, name: str) -> IO[bytes]:
        try:
            return tables.open_binary(self._fs, name)
        except tables.READ_ERRORS as exc:
            raise InputError(f"{self._label(name)}: cannot open: {exc}") from exc

    def _translate(self, read: Callable[[], _T], name: str) -> _T:
        """``read()``, with a broken or truncated file turned into InputError."""
        try:
            return read()
        except InputError:
            raise
        except tables.READ_ERRORS as exc:
            raise InputError(f"{self._label(name)}: cannot read: {exc}") from exc

    def _file_rows(self, name: str) -> Iterator[InputRow]:
        cols = self._cols.for_file(name.rsplit("/", 1)[-1]) if self._is_dir else self._cols
        make_row, extra = _ROW_MAKERS[self.format]
        with self._open(name) as f:
            for record in self._records(f, name):
                if record.values is None:
                    yield cols.error_row(record.where, record.error or "unreadable record")
                else:
                    yield make_row(record.values, cols, extra)

    def _records(self, f: IO[bytes], name: str) -> Iterator[Record]:
        if self.format == "parquet":
            return tables.parquet_records(tables.parquet_file(f), self._cols.needed(),
                                          min(self.shard_size, _PARQUET_BATCH))
        if self.format in ("csv", "tsv"):
            table = _csv_table(f, self._delimiter, self._label(name))
            _require_columns(table.header, self._cols, self._label(name))
            return table.records()
        if self.format == "jsonl":
            return tables.jsonl_records(f, max_chars=_MAX_LINE_CHARS, strict=False,
                                        label=self._label(name))
        return tables.txt_records(f, max_chars=_MAX_LINE_CHARS, strict=False)

    def _rows(self) -> Iterator[InputRow]:
        for name in self._files:
            logger.debug("reading %s", name)
            rows = self._file_rows(name)
            while True:
                row = self._translate(partial(next, rows, None), name)
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
    matching = [f for f in files if tables.suffix_format(f) == fmt]
    if not matching and explicit:
        matching = [f for f in files if tables.suffix_format(f) is None]
    return matching
