"""The recheck table: one row per rechecked sample, and where a recheck is written.

ARCHITECTURE.md §4: ``rechecks/<UTC stamp>/recheck.parquet`` holds ``key``,
``url``, ``previous_status``, ``status``, ``reason``, ``evidence`` and
``decided_at``; we also keep the shard the sample lives in, its stored
``sha256``, the evidence as data (the same ``evidence_*`` columns as the
audit) and the HTTP status a ``--headers`` request met. Pure: no I/O.

``status`` says what the recheck found:

- ``success``: consent still holds as of ``decided_at``;
- ``disallowed``: consent was withdrawn (``reason`` is a §6 disallowed code,
  the evidence names the signal); applying the recheck removes the sample;
- ``changed``: consent holds, but the URL now serves other bytes than the
  stored ones (seen with ``--headers``); the sample is kept, never re-downloaded;
- ``failed_to_download``: the site could not be asked (``reason`` is a §6
  network code such as ``dns_error``); the site said nothing new, so the
  sample is kept.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from ..layout import RECHECKS_DIR
from ..writer import EVIDENCE_FIELDS

RECHECK_FILE = "recheck.parquet"
SUMMARY_FILE = "summary.json"

KEPT = "success"
WITHDRAWN = "disallowed"
CHANGED = "changed"
UNCHECKED = "failed_to_download"
STATUSES = (KEPT, WITHDRAWN, CHANGED, UNCHECKED)

RECHECK_FIELDS: tuple[pa.Field, ...] = (
    pa.field("shard", pa.int64()),
    pa.field("key", pa.string()),
    pa.field("url", pa.string()),
    pa.field("sha256", pa.string()),  # the stored sample's digest, from the audit
    pa.field("previous_status", pa.string()),
    pa.field("status", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("evidence", pa.string()),
    pa.field("http_status", pa.int32()),  # of the --headers request; null without one
    pa.field("decided_at", pa.timestamp("us", tz="UTC")),
    *EVIDENCE_FIELDS,
)
RECHECK_SCHEMA = pa.schema(RECHECK_FIELDS)


def recheck_stamp(at: datetime) -> str:
    """A recheck's folder name: its start time in UTC, to the second (sorts by time)."""
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def recheck_folder(stamp: str) -> str:
    """``"rechecks/20261127T142000Z"``: the folder of the recheck started at ``stamp``."""
    return f"{RECHECKS_DIR}/{stamp}"


def recheck_file(stamp: str) -> str:
    """The recheck table of the recheck started at ``stamp``, relative to the run folder."""
    return f"{recheck_folder(stamp)}/{RECHECK_FILE}"


def summary_file(stamp: str) -> str:
    """The summary json of the recheck started at ``stamp``, relative to the run folder."""
    return f"{recheck_folder(stamp)}/{SUMMARY_FILE}"
