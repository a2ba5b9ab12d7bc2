"""Opt-out and opt-in list files → a :class:`~consentfetch.consent.registry.ConsentList`.

The files are read through the tables layer (:mod:`~consentfetch.tables`);
what an entry means, and how lookups work, is the registry's
(:mod:`consentfetch.consent.registry`, whose docstring describes the formats).
A list file is parquet, csv, jsonl or txt (no tsv), optionally compressed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import IO, Any

from . import tables
from .consent.registry import ConsentList, ListBuilder, check_role, list_columns
from .errors import InputError

__all__ = ["LIST_FORMATS", "load_lists"]

LIST_FORMATS = {suffix: fmt for suffix, fmt in tables.SUFFIX_FORMATS.items() if fmt != "tsv"}
_PARQUET_BATCH = 65_536
_MAX_RECORD_CHARS = 4 << 20  # a line or CSV record longer than this is one malformed entry


def load_lists(paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str], *,
               storage_options: dict[str, Any] | None = None,
               role: str | None = None) -> ConsentList:
    """Read the list files ``paths`` (local paths or fsspec URLs), in order.

    ``role`` (``"opt-out"`` or ``"opt-in"``) only words the evidence
    (``opt-out list optout.csv: ...``); without it the evidence says
    ``list optout.csv: ...``, true of either use.
    Raises :class:`~consentfetch.errors.InputError` for a file that cannot be used,
    :class:`~consentfetch.errors.ConfigError` for another role (before any file is read).
    """
    check_role(role)
    names = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    builder = ListBuilder([os.fspath(name) for name in names], role=role)
    for index, name in enumerate(builder.names):
        _load_file(builder, index, name, storage_options or {})
    return builder.build()


def list_format(name: str) -> str:
    """The format of a list file's name; :class:`InputError` when it says none we read."""
    tables.check_compression(name.rstrip("/"), name)
    fmt = tables.suffix_format(name.rstrip("/"), LIST_FORMATS)
    if fmt is None:
        raise InputError(f"{name}: unknown list format (expected a name ending in "
                         f"{', '.join(sorted(LIST_FORMATS))}, optionally "
                         f"+ {', '.join(tables.COMPRESSION_SUFFIXES)})")
    return fmt


def _load_file(builder: ListBuilder, index: int, name: str,
               storage_options: dict[str, Any]) -> None:
    fmt = list_format(name)
    try:
        fs, path = tables.filesystem(name, storage_options)
        with tables.open_binary(fs, path) as f:
            builder.add_file(index, fmt, _records(f, fmt, name))
    except InputError:
        raise
    except FileNotFoundError as exc:
        raise InputError(f"{name}: list file not found") from exc
    except tables.OPEN_ERRORS as exc:
        raise InputError(f"{name}: cannot read the list: {exc}") from exc


def _records(f: IO[bytes], fmt: str, name: str) -> Iterator[tables.Record]:
    """The records of a list file; text must be UTF-8 (a list is not guessed at)."""
    if fmt == "txt":
        return tables.txt_records(f, max_chars=_MAX_RECORD_CHARS, strict=True)
    if fmt == "jsonl":
        return tables.jsonl_records(f, max_chars=_MAX_RECORD_CHARS, strict=True, label=name)
    if fmt == "csv":
        table = tables.CsvTable(f, label=name, delimiter=",", max_chars=_MAX_RECORD_CHARS,
                                strict=True)
        list_columns(name, table.header)
        return table.records()
    pf = tables.parquet_file(f)
    return tables.parquet_records(pf, list_columns(name, pf.schema_arrow.names), _PARQUET_BATCH)
