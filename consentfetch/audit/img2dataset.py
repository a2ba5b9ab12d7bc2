"""img2dataset's output folders read as an audit, as a courtesy.

img2dataset writes shards like ours (``00000.tar``, ``00000.parquet``,
``00000_stats.json``) but no ``run.json``, and records no consent check. Its
shard parquet has ``status`` (``success``, ``failed_to_download``,
``failed_to_resize``) and ``error_message`` (its exception text) instead of
our ``reason`` and ``evidence``. :func:`as_audit` maps a shard's table to our
audit columns: the status is kept, ``evidence`` is the ``error_message``, and
``reason`` is the reason code that message recognisably stands for
(:func:`reason_of`), else null. Only failure reasons are read: img2dataset
records its one consent refusal (X-Robots-Tag) as ``failed_to_download``, and
``x_robots_tag`` belongs with ``disallowed`` (ARCHITECTURE.md §6), so that row
keeps a null reason and its message as evidence. Columns img2dataset does not have (the
consent and evidence columns, ``decided_at``) are null. Pure: no I/O.
"""

from __future__ import annotations

import re

import pyarrow as pa

from ..consent.decision import Reason
from ..writer import AUDIT_FIELDS, IMG2DATASET, LEAD_FIELDS, RESERVED_COLUMNS

__all__ = ["IMG2DATASET", "IMG2DATASET_NOTE", "as_audit", "http_status_of", "reason_of"]

#: What the audit commands say about such a folder.
IMG2DATASET_NOTE = ("written by img2dataset, not consentfetch: no consent checks were "
                    "recorded; statuses are img2dataset's and reasons are read from its "
                    "error_message (null when not recognised)")

# img2dataset's messages (urllib's and its resizer's exception texts), first match wins.
_REASONS: tuple[tuple[re.Pattern[str], Reason], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), reason) for pattern, reason in (
        (r"redirect error|redirected too many|too many redirects", Reason.TOO_MANY_REDIRECTS),
        (r"^HTTP Error \d{3}\b", Reason.HTTP_ERROR),
        (r"timed out|timeout", Reason.TIMEOUT),
        (r"Name or service not known|nodename nor servname|name resolution|"
         r"getaddrinfo failed|No address associated", Reason.DNS_ERROR),
        (r"CERTIFICATE_VERIFY_FAILED|\bSSL\b|certificate", Reason.TLS_ERROR),
        (r"Connection (refused|reset|aborted)|Remote end closed|IncompleteRead|"
         r"Network is unreachable|No route to host", Reason.CONNECTION_ERROR),
        (r"unknown url type|no host given|Invalid URL", Reason.INVALID_URL),
        (r"^hash mismatch$", Reason.HASH_MISMATCH),
        (r"^Image decoding error$|cannot identify image", Reason.DECODE_ERROR),
        (r"^image too small$", Reason.IMAGE_TOO_SMALL),
        (r"^aspect ratio too large$", Reason.ASPECT_RATIO_TOO_LARGE),
        (r"^image area too large$", Reason.IMAGE_TOO_LARGE),
    ))
_HTTP_STATUS = re.compile(r"^HTTP Error (\d{3})\b")


def reason_of(error_message: str | None) -> str | None:
    """Our reason code for one of img2dataset's error messages, or None."""
    if not error_message:
        return None
    for pattern, reason in _REASONS:
        if pattern.search(error_message):
            return str(reason)
    return None


def http_status_of(error_message: str | None) -> int | None:
    """The status code of an ``HTTP Error 404: Not Found`` message, or None."""
    match = _HTTP_STATUS.match(error_message or "")
    return int(match.group(1)) if match else None


def as_audit(table: pa.Table) -> pa.Table:
    """One img2dataset shard parquet as audit rows (see the module doc)."""
    messages = table.column("error_message").to_pylist() \
        if "error_message" in table.column_names else [None] * table.num_rows
    derived = {"reason": pa.array([reason_of(m) for m in messages], pa.string()),
               "evidence": pa.array(messages, pa.string()),
               "http_status": pa.array([http_status_of(m) for m in messages], pa.int32())}
    extra = [table.schema.field(name) for name in table.column_names
             if name not in RESERVED_COLUMNS and name != "error_message"]
    fields = [*LEAD_FIELDS, *extra, *AUDIT_FIELDS]
    columns = []
    for field in fields:
        if field.name in derived:
            columns.append(derived[field.name])
        elif field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))
