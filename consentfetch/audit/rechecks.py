"""Reading the rechecks of an output folder back (``rechecks/<stamp>/``).

A recheck is complete when its ``summary.json`` exists (it is written after
the recheck table). :func:`latest_recheck` gives the newest one's summary;
:func:`recheck_rows` the rows of some samples in it, read batch by batch.
:func:`recheck_sentence` says what a recheck found of one sample, in words.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..layout import RECHECKS_DIR
from ..recheck.table import (
    CHANGED,
    KEPT,
    UNCHECKED,
    WITHDRAWN,
    recheck_file,
    summary_file,
)
from ..writer import OutputDir
from .read import open_output

_BATCH = 65_536


def recheck_stamps(out: OutputDir) -> list[str]:
    """The stamps of the complete rechecks in ``out``, oldest first."""
    folder = out.path(RECHECKS_DIR)
    out.fs.invalidate_cache(folder)
    try:
        listed = out.fs.ls(folder, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return []
    stamps = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in listed)
    return [s for s in stamps if out.exists(summary_file(s))]


def latest_recheck(output_dir: str | OutputDir,
                   storage_options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The ``summary.json`` of the newest complete recheck of ``output_dir``, or None."""
    out = output_dir if isinstance(output_dir, OutputDir) \
        else open_output(output_dir, storage_options)
    stamps = recheck_stamps(out)
    if not stamps:
        return None
    summary = out.read_json(summary_file(stamps[-1]))
    return summary if isinstance(summary, dict) else None


def recheck_rows(out: OutputDir, stamp: str, keys: Collection[str]) -> dict[str, dict[str, Any]]:
    """The recheck rows of the samples ``keys`` in the recheck ``stamp``, by key."""
    if not keys:
        return {}
    wanted = pa.array(sorted(keys), pa.string())
    found: dict[str, dict[str, Any]] = {}
    with out.fs.open(out.path(recheck_file(stamp)), "rb") as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=_BATCH):
            table = pa.Table.from_batches([batch])
            hits = table.filter(pc.is_in(table["key"], value_set=wanted))
            found.update((row["key"], row) for row in hits.to_pylist())
    return found


def recheck_sentence(row: Mapping[str, Any], downloaded: str | None, when: str | None) -> str:
    """What a recheck found of a downloaded sample: "Downloaded on D1; on D2 the site
    opted out: <evidence>." ``downloaded`` and ``when`` are the two dates, in words."""
    first = f"Downloaded on {downloaded}" if downloaded else "Downloaded"
    on = f"on {when}" if when else "when rechecked"
    evidence = str(row.get("evidence") or "").strip().rstrip(".")
    status = row.get("status")
    if status == WITHDRAWN:
        text = f"{first}; {on} the site opted out: {evidence or row.get('reason')}"
        return text + f" (reason {row.get('reason')})."
    if status == CHANGED:
        return f"{first}; {on} the URL served other bytes than the sample's: {evidence}."
    if status == UNCHECKED:
        return (f"{first}; {on} the site could not be asked ({row.get('reason')}: "
                f"{evidence}), so the sample was kept.")
    if status == KEPT:
        return f"{first}; {on} consent still held."
    return f"{first}; {on} the recheck says {status}."
