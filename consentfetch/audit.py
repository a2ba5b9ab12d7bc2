"""Reading the audit back: every row of every complete shard of an output folder."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc

from .reader import shard_name
from .writer import OutputDir


def read_audit(output_dir: str, *, status: str | None = None, reason: str | None = None,
               host: str | None = None,
               storage_options: dict[str, Any] | None = None) -> pa.Table:
    """All audit rows of the complete shards in ``output_dir``, as one pyarrow Table.

    Works on a finished run and on one still in progress (only shards that
    are complete are read). ``status``, ``reason`` and ``host`` (the URL's
    hostname, case-insensitive) keep only the matching rows::

        >>> table = read_audit("out/", status="disallowed")
        >>> table.group_by("reason").aggregate([("key", "count")])
    """
    out = OutputDir(output_dir, storage_options)
    tables = [out.read_table(f"{shard_name(shard_id)}.parquet")
              for shard_id in sorted(out.completed_shards())]
    if not tables:
        return pa.table({})
    table = pa.concat_tables(tables, promote_options="permissive")
    if status is not None:
        table = table.filter(pc.equal(table["status"], status))
    if reason is not None:
        table = table.filter(pc.equal(table["reason"], reason))
    if host is not None:
        wanted = host.lower()
        mask = [_hostname(u) == wanted for u in table["url"].to_pylist()]
        table = table.filter(pa.array(mask, pa.bool_()))
    return table


def _hostname(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None
