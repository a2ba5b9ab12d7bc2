"""How many URLs ended how: totals by status and reason, and the hosts that opted out
or failed most (:func:`summarize_audit`)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..consent.decision import Status
from .hosts import host_column
from .read import read_columns

SUMMARY_GROUPS = ("status", "reason", "host")
FAILED = (str(Status.FAILED_TO_DOWNLOAD), str(Status.FAILED_TO_RESIZE))
STATUS_ORDER = (str(Status.SUCCESS), str(Status.DISALLOWED), *FAILED)


def summarize_audit(output_dir_or_table: str | pa.Table, *, by: str = "reason", top: int = 10,
                    storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Count the audit rows of a run (or of an audit table) by status, reason and host.

    ``by`` chooses the rows of ``groups``, the table that ``consentfetch
    audit --by`` prints: ``"status"``, ``"reason"`` (each reason code with its
    status; successes have reason ``None``) or ``"host"`` (every host with
    its counts, most opt-outs first, then most failures). ``top`` bounds the
    two host rankings in ``top_hosts`` (and ``groups`` when ``by="host"``);
    ``top=0`` keeps every host.
    Everything returned is plain dicts, lists, strings and numbers, ready for
    ``json.dumps``. Shares are fractions of ``total``, rounded to 4 places.

    Example::

        >>> summarize_audit("out/")
        {"total": 38,
         "by_status": {"success": 17, "disallowed": 17, "failed_to_download": 3,
                       "failed_to_resize": 1},
         "by_reason": {"robots_disallowed": 4, "x_robots_tag": 4, ...},
         "by": "reason",
         "groups": [{"status": "success", "reason": None, "count": 17, "share": 0.4474},
                    {"status": "disallowed", "reason": "robots_disallowed", "count": 4,
                     "share": 0.1053}, ...],
         "top_hosts": {
             "opted_out": [{"host": "gallery.example", "urls": 16, "success": 12,
                            "disallowed": 4, "failed": 0,
                            "reasons": {"robots_disallowed": 4}}, ...],
             "failed": [...]}}

    ``by_status`` lists the four statuses in their usual order and omits
    none (zeros included); ``by_reason`` holds only the reason codes that
    occur, most frequent first.
    """
    if by not in SUMMARY_GROUPS:
        raise ValueError(f"by must be one of {', '.join(SUMMARY_GROUPS)}, not {by!r}")
    if isinstance(output_dir_or_table, pa.Table):
        table = output_dir_or_table
    else:
        table = read_columns(output_dir_or_table, ("url", "status", "reason"), storage_options)
    total = table.num_rows
    statuses = _count(table, "status")
    pairs = _count_pairs(table)
    by_status = {s: statuses.pop(s, 0) for s in STATUS_ORDER}
    by_status.update(sorted(statuses.items()))  # a status from a newer version
    reasons: Counter[str] = Counter()
    for (_, reason), n in pairs.items():
        if reason is not None:
            reasons[reason] += n
    hosts = _host_rows(table)
    summary: dict[str, Any] = {
        "total": total,
        "by_status": by_status,
        "by_reason": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "by": by,
        "groups": [],
        "top_hosts": {
            "opted_out": _ranked(hosts, "disallowed", top),
            "failed": _ranked(hosts, "failed", top),
        },
    }
    if by == "status":
        summary["groups"] = [{"status": s, "count": n, "share": _share(n, total)}
                             for s, n in by_status.items() if n]
    elif by == "reason":
        summary["groups"] = [
            {"status": s, "reason": r, "count": n, "share": _share(n, total)}
            for (s, r), n in sorted(pairs.items(), key=lambda kv: (
                _status_rank(kv[0][0]), -kv[1], kv[0][1] or ""))]
    else:
        ordered = sorted(hosts, key=lambda h: (-h["disallowed"], -h["failed"], -h["urls"],
                                               h["host"] or ""))
        summary["groups"] = ordered[:top] if top else ordered
    return summary


def _share(n: int, total: int) -> float:
    return round(n / total, 4) if total else 0.0


def _status_rank(status: str | None) -> int:
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)


def _count(table: pa.Table, column: str) -> Counter[str]:
    if table.num_rows == 0 or column not in table.column_names:
        return Counter()
    counts = pc.value_counts(table[column])
    return Counter({v["values"]: v["counts"] for v in counts.to_pylist()
                    if v["values"] is not None})


def _count_pairs(table: pa.Table) -> Counter[tuple[str, str | None]]:
    if table.num_rows == 0 or "status" not in table.column_names:
        return Counter()
    grouped = table.select(["status", "reason"]).group_by(
        ["status", "reason"], use_threads=False).aggregate([([], "count_all")])
    return Counter({(r["status"], r["reason"]): r["count_all"] for r in grouped.to_pylist()})


def _host_rows(table: pa.Table) -> list[dict[str, Any]]:
    """One dict per host: URLs, successes, opt-outs, failures, reasons."""
    if table.num_rows == 0 or "url" not in table.column_names:
        return []
    small = pa.table({"host": host_column(table), "status": table["status"],
                      "reason": table["reason"]})
    grouped = small.group_by(["host", "status", "reason"], use_threads=False).aggregate(
        [([], "count_all")])
    rows: dict[str | None, dict[str, Any]] = {}
    for g in grouped.to_pylist():
        row = rows.setdefault(g["host"], {"host": g["host"], "urls": 0, "success": 0,
                                          "disallowed": 0, "failed": 0, "reasons": Counter()})
        n = g["count_all"]
        row["urls"] += n
        if g["status"] == Status.SUCCESS:
            row["success"] += n
        elif g["status"] == Status.DISALLOWED:
            row["disallowed"] += n
        elif g["status"] in FAILED:
            row["failed"] += n
        if g["reason"] is not None:
            row["reasons"][g["reason"]] += n
    for row in rows.values():
        row["reasons"] = dict(sorted(row["reasons"].items(), key=lambda kv: (-kv[1], kv[0])))
    return list(rows.values())


def _ranked(hosts: list[dict[str, Any]], field: str, top: int) -> list[dict[str, Any]]:
    ranked = sorted((h for h in hosts if h[field]),
                    key=lambda h: (-h[field], -h["urls"], h["host"] or ""))
    return ranked[:top] if top else ranked

