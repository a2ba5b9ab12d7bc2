"""Reading an output folder back: audit rows of complete shards, run.json, origins.parquet.

Everything works on a finished run and on one still in progress: only
complete shards (``OutputDir.completed_shards``) are read. Output folders may
be any fsspec URL (``s3://…``, ``memory://…``). Shards written before the
``evidence_*`` columns existed read with those columns null. A folder img2dataset
wrote reads too, its rows mapped to the audit columns (:mod:`.img2dataset`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..consent.origins import snapshot_key
from ..errors import OutputError
from ..layout import RUN_FILE, parquet_name
from ..writer import EVIDENCE_FIELDS, OutputDir
from .hosts import host_column, norm_host
from .img2dataset import IMG2DATASET, as_audit

# The columns a row listing shows, in order (``consentfetch audit --filter``).
ROW_COLUMNS = ("key", "url", "status", "reason", "evidence")


def open_output(output_dir: str, storage_options: dict[str, Any] | None = None) -> OutputDir:
    """The output folder, for reading: raises :class:`OutputError` if it does not exist.

    (``OutputDir`` itself creates a missing folder, which is right for writing
    and wrong for a typo in ``consentfetch audit``.)
    """
    fs, root = fsspec.core.url_to_fs(str(output_dir), **(storage_options or {}))
    try:
        found = fs.isdir(root.rstrip("/") or "/")
    except OSError as exc:
        raise OutputError(f"cannot read output folder {output_dir}: {exc}") from exc
    if not found:
        raise OutputError(f"no output folder at {output_dir}")
    return OutputDir(output_dir, storage_options)


def read_audit(output_dir: str, *, status: str | None = None, reason: str | None = None,
               host: str | None = None,
               storage_options: dict[str, Any] | None = None) -> pa.Table:
    """All audit rows of the complete shards in ``output_dir``, as one pyarrow Table.

    Works on a finished run and on one still in progress (only shards that
    are complete are read); ``output_dir`` may be any fsspec URL, with
    ``storage_options`` passed to its filesystem. ``status``, ``reason`` and
    ``host`` (the URL's hostname, case-insensitive) keep only the matching
    rows. A folder without complete shards gives an empty table; a folder
    that does not exist raises :class:`~consentfetch.errors.OutputError`.

    Examples::

        >>> audit = read_audit("out/")                       # every row
        >>> refused = read_audit("out/", status="disallowed")
        >>> refused.group_by("reason").aggregate([("key", "count")])
        >>> read_audit("out/", reason="x_robots_tag", host="Example.COM").column("url")
        >>> read_audit("s3://bucket/run1/", storage_options={"anon": True})
    """
    out = open_output(output_dir, storage_options)
    table = _read_shards(out)
    if table.num_rows == 0:
        return table
    if status is not None:
        table = table.filter(pc.equal(table["status"], status))
    if reason is not None:
        table = table.filter(pc.equal(table["reason"], reason))
    if host is not None:
        table = table.filter(pc.fill_null(pc.equal(host_column(table), norm_host(host)),
                                          False))
    return table


def read_columns(output_dir: str, columns: Sequence[str],
                 storage_options: dict[str, Any] | None = None) -> pa.Table:
    """Only ``columns`` of the audit rows of every complete shard (those that exist).

    For summaries of large runs: reading three columns instead of all of them
    keeps memory to a fraction.
    """
    return _read_shards(open_output(output_dir, storage_options), columns)


def _read_shards(out: OutputDir, columns: Sequence[str] | None = None) -> pa.Table:
    foreign = out.written_by() == IMG2DATASET  # read as a courtesy, mapped to our columns
    tables = []
    for shard_id in sorted(out.completed_shards()):
        # ParquetFile, not pq.read_table: see OutputDir.read_table.
        with out.fs.open(out.path(parquet_name(shard_id)), "rb") as f:
            parquet = pq.ParquetFile(f)
            if foreign:
                table = as_audit(parquet.read())
                tables.append(table if columns is None else
                              table.select([c for c in columns if c in table.column_names]))
                continue
            wanted = None if columns is None else \
                [c for c in columns if c in parquet.schema_arrow.names]
            tables.append(with_evidence_columns(parquet.read(columns=wanted), columns))
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="permissive")


def with_evidence_columns(table: pa.Table, columns: Sequence[str] | None = None) -> pa.Table:
    """``table`` with the ``evidence_*`` columns it lacks (of ``columns``, or all) as nulls:
    a shard written before they existed reads like one whose rows have no evidence data."""
    for f in EVIDENCE_FIELDS:
        if f.name not in table.column_names and (columns is None or f.name in columns):
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    return table


def written_by(output_dir: str, storage_options: dict[str, Any] | None = None) -> str | None:
    """Which tool wrote ``output_dir``'s shards: ``"consentfetch"``,
    ``"img2dataset"`` (read as a courtesy: see :mod:`.img2dataset`),
    ``"unknown"`` (shards without run.json), or None (no run.json, no shard)."""
    return open_output(output_dir, storage_options).written_by()


def read_run(output_dir: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``run.json`` of an output folder, or ``{}`` if it has none (yet)."""
    out = open_output(output_dir, storage_options)
    if not out.exists(RUN_FILE):
        return {}
    value = out.read_json(RUN_FILE)
    return value if isinstance(value, dict) else {}


def read_origins(output_dir: str, storage_options: dict[str, Any] | None = None, *,
                 origins: Collection[str] | None = None) -> list[dict[str, Any]]:
    """The rows of ``origins.parquet`` (one per origin file consulted), or ``[]``.

    ``origins.parquet`` is a folder of parts, written as shards complete (an
    older run's single file reads the same); a file fetched more than once
    (a resumed run, several worker processes) gives its latest fetch. Bodies
    are left out. ``origins`` (``"https://example.com"``, scheme + host +
    port) reads only those origins' rows: each part is sorted by origin in
    small row groups, so only the row groups that may hold them are read.
    """
    out = open_output(output_dir, storage_options)
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for part in out.origin_parts():  # oldest first
        rows = out.iter_rows(part) if origins is None else \
            iter(out.read_rows(part, "origin", set(origins)))
        for row in rows:
            row.pop("body", None)
            latest[snapshot_key(row)] = row
    return sorted(latest.values(), key=lambda r: (r["origin"], r["kind"], r["url"]))


def completed_shard_count(output_dir: str,
                          storage_options: dict[str, Any] | None = None) -> int:
    """How many shards of ``output_dir`` are complete (their ``_stats.json`` exists)."""
    return len(open_output(output_dir, storage_options).completed_shards())

