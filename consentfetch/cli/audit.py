"""The audit family of commands: ``audit`` and ``report`` here, ``why`` in :mod:`.why`.

    consentfetch audit OUTPUT_DIR [--by status|reason|host] [--format table|json|csv]
                       [--status S] [--reason R] [--host H] [--filter EXPR] [--count]
                       [--limit N]
    consentfetch why URL OUTPUT_DIR [--json]
    consentfetch why --host HOST OUTPUT_DIR [--json]
    consentfetch report OUTPUT_DIR [-o report.html] [--examples N] [--top N]

:func:`add_commands` adds the three subcommands to a parser's subparsers and
returns their handlers. A handler prints to stdout (errors to stderr) and
returns an exit code: 0 ok, 1 no data or no match, 2 bad arguments. The
functions it calls (:mod:`consentfetch.audit`) log and never print.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

import pyarrow as pa

from ..audit import (
    IMG2DATASET,
    REASONS,
    ROW_COLUMNS,
    STATUSES,
    SUMMARY_GROUPS,
    FilterError,
    completed_shard_count,
    read_audit,
    read_columns,
    read_run,
    select_rows,
    summarize_audit,
    written_by,
)
from ..audit.rechecks import latest_recheck
from ..consent.decision import Reason, Status, status_of
from ..errors import ConsentFetchError
from ..safetext import for_spreadsheet, json_for_terminal
from . import why
from .common import (
    EXIT_OK,
    Handler,
    cell,
    failed,
    no_data,
    note_foreign,
    positive,
    usage_error,
)

FORMATS = ("table", "json", "csv")


def add_commands(subparsers: Any) -> dict[str, Handler]:
    """Add ``audit``, ``why`` and ``report`` to ``subparsers`` (what
    ``ArgumentParser.add_subparsers()`` returns); returns {command: handler}."""
    _add_audit(subparsers)
    why.add_parser(subparsers)
    _add_report(subparsers)
    return {"audit": cmd_audit, "why": why.cmd_why, "report": cmd_report}


def _add_audit(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "audit", help="count an output folder's audit rows, or list the rows that match",
        description="Count the audit rows of every complete shard of OUTPUT_DIR (a finished "
                    "run or one still going; local or any fsspec URL). With --status, "
                    "--reason, --host or --filter, list the matching rows instead "
                    "(key, url, status, reason, evidence).",
        epilog='filter language: column == "value", !=, column in ("a", "b"), not in, '
               "and, or, not, parentheses; values are quoted strings, numbers or null. "
               "Columns are the audit columns plus host (the URL's hostname). Example: "
               "--filter 'reason in (\"x_robots_tag\", \"tdm_reserved\") and host != "
               "\"example.com\"'")
    p.add_argument("output_dir", metavar="OUTPUT_DIR")
    p.add_argument("--by", choices=SUMMARY_GROUPS, default="reason",
                   help="group counts by status, by reason (default) or by host (the hosts "
                        "with most opt-outs and most failures)")
    p.add_argument("--format", choices=FORMATS, default="table")
    g = p.add_argument_group("row selection (lists the matching rows)")
    g.add_argument("--status", action="append", default=[], metavar="STATUS",
                   choices=[str(s) for s in STATUSES],
                   help="keep rows with this status (repeatable: any of them): "
                        + ", ".join(STATUSES))
    g.add_argument("--reason", action="append", default=[], metavar="REASON",
                   choices=[str(r) for r in REASONS],
                   help="keep rows with this reason code (repeatable; see README for the "
                        "codes)")
    g.add_argument("--host", action="append", default=[], metavar="HOST",
                   help="keep rows whose URL is on this host, any case (repeatable)")
    g.add_argument("--filter", metavar="EXPR", help='e.g. \'reason == "x_robots_tag"\'')
    g.add_argument("--count", action="store_true",
                   help="count the selected rows (as without a selection) instead of "
                        "listing them")
    p.add_argument("--limit", type=positive, metavar="N",
                   help="list at most N rows (default: all); with --by host, the top N "
                        "hosts (default 10)")


def _add_report(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report", help="write a self-contained HTML report of a run",
        description="Write one HTML file (no network, no scripts) describing a run: what "
                    "share of URLs was downloaded, refused (by signal) or failed (by "
                    "reason), the hosts that opted out most, the run's consent profile, "
                    "checks and configuration, and examples with their evidence.")
    p.add_argument("output_dir", metavar="OUTPUT_DIR")
    p.add_argument("-o", "--output", default="report.html",
                   help="where to write the HTML (default: report.html; any fsspec URL)")
    p.add_argument("--examples", type=positive, default=3, metavar="N",
                   help="example URLs per reason (default 3)")
    p.add_argument("--top", type=positive, default=10, metavar="N",
                   help="hosts in each ranking (default 10)")


# ---------------------------------------------------------------- audit


def cmd_audit(args: argparse.Namespace) -> int:
    out = sys.stdout
    selecting = bool(args.status or args.reason or args.host or args.filter is not None)
    try:
        if selecting:
            table = select_rows(read_audit(args.output_dir), args.filter, status=args.status,
                                reason=args.reason, host=args.host)
        else:  # counts need three columns only
            table = read_columns(args.output_dir, ("url", "status", "reason"))
    except FilterError as exc:
        return usage_error(f"--filter: {exc}")
    except ConsentFetchError as exc:
        return failed(exc)
    note_foreign(args.output_dir)
    if table.num_rows == 0:
        if not read_run(args.output_dir):
            return usage_error(f"{args.output_dir} holds no consentfetch run (no run.json): "
                               "is it the output folder of `consentfetch download`?")
        return no_data(f"no matching audit rows in {args.output_dir}" if selecting
                        else f"no complete shards in {args.output_dir} (yet)")
    if selecting and not args.count:
        _print_rows(table, args.format, args.limit, out)
        return EXIT_OK
    top = args.limit or 10
    summary = summarize_audit(table, by=args.by, top=top)
    if args.format == "json":
        run = read_run(args.output_dir)
        summary = {"output_dir": args.output_dir, "run_state": run.get("state"),
                   "written_by": written_by(args.output_dir),
                   "complete_shards": completed_shard_count(args.output_dir), **summary,
                   "latest_recheck": _recheck_counts(latest_recheck(args.output_dir))}
        print(json_for_terminal(summary, indent=2), file=out)
    elif args.format == "csv":
        _summary_csv(summary, out)
    else:
        _summary_table(summary, args.output_dir, out)
    return EXIT_OK


def _print_rows(table: pa.Table, fmt: str, limit: int | None, out: TextIO) -> None:
    rows = table.select([c for c in ROW_COLUMNS if c in table.column_names])
    shown = rows.slice(0, limit) if limit else rows
    records = shown.to_pylist()
    if fmt == "json":
        print(json_for_terminal(records, indent=2, default=str), file=out)
    elif fmt == "csv":
        _csv_rows(out, list(ROW_COLUMNS), ([r.get(c) for c in ROW_COLUMNS] for r in records))
    else:
        cells = [[cell(r.get(c)) for c in ROW_COLUMNS] for r in records]
        _table(list(ROW_COLUMNS), cells, out)
    if shown.num_rows < rows.num_rows:
        print(f"consentfetch: {rows.num_rows - shown.num_rows} more matching row(s) not "
              "shown (--limit)", file=sys.stderr)


def _csv_rows(out: TextIO, header: list[str], rows: Iterable[Sequence[Any]]) -> None:
    """CSV for spreadsheets: no cell is a formula or holds raw control bytes."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([for_spreadsheet(v) for v in row] for row in rows)


def _table(header: list[str], rows: list[list[str]], out: TextIO,
           right: Sequence[int] = ()) -> None:
    """Aligned columns; the last column is not padded (it may be long)."""
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i])
              for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = []
        for i, text in enumerate(cells):
            if i == len(cells) - 1:
                parts.append(text.rjust(widths[i]) if i in right else text)
            else:
                parts.append(text.rjust(widths[i]) if i in right else text.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    print(line(header), file=out)
    for row in rows:
        print(line(row), file=out)


def _pct(share: float) -> str:
    if share and share < 0.001:
        return "<0.1%"
    return f"{share * 100:.1f}%"


def recheck_line(summary: dict[str, Any]) -> str:
    """``latest recheck 20261127T142000Z: 40 kept, 3 withdrawn (robots_disallowed 2, ...)``."""
    counts = summary.get("counts", {})
    withdrawn = summary.get("reasons", {}).get("disallowed", {})
    why = ", ".join(f"{cell(r)} {n}" for r, n in sorted(withdrawn.items(), key=lambda kv: -kv[1]))
    return (f"latest recheck {cell(summary.get('stamp'))}: {counts.get('success', 0)} kept, "
            f"{counts.get('disallowed', 0)} withdrawn" + (f" ({why})" if why else "")
            + f", {counts.get('changed', 0)} changed, "
            f"{counts.get('failed_to_download', 0)} unchecked")


def _recheck_counts(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    return {k: summary.get(k) for k in ("stamp", "finished_at", "counts", "reasons",
                                        "headers", "consent_profile")}


def _summary_table(summary: dict[str, Any], output_dir: str, out: TextIO) -> None:
    run = read_run(output_dir)
    shards = completed_shard_count(output_dir)
    state = run.get("state")
    note = "run in progress" if state == "running" else f"run {state}" if state else \
        f"written by {IMG2DATASET}" if written_by(output_dir) == IMG2DATASET else "no run.json"
    total = summary["total"]
    print(f"{cell(output_dir)}: {total} URLs in {shards} complete shard(s) ({note})", file=out)
    print("  " + ", ".join(f"{n} {s} ({_pct(n / total if total else 0)})"
                           for s, n in summary["by_status"].items() if n), file=out)
    recheck = latest_recheck(output_dir)
    if recheck is not None:
        print("  " + recheck_line(recheck), file=out)
    print(file=out)
    by = summary["by"]
    if by == "status":
        _table(["status", "count", "share"],
               [[g["status"], str(g["count"]), _pct(g["count"] / total)]
                for g in summary["groups"]],
               out, right=(1, 2))
    elif by == "reason":
        _table(["status", "reason", "count", "share"],
               [[g["status"], g["reason"] or "-", str(g["count"]), _pct(g["count"] / total)]
                for g in summary["groups"]], out, right=(2, 3))
    else:
        for title, field in (("hosts with the most opt-outs", "disallowed"),
                             ("hosts with the most failures", "failed")):
            ranked = summary["top_hosts"]["opted_out" if field == "disallowed" else "failed"]
            print(f"{title}:", file=out)
            if not ranked:
                print("  (none)\n", file=out)
                continue
            _table(["host", "urls", field, "share", "reasons"],
                   [[cell(h["host"]), str(h["urls"]), str(h[field]),
                     _pct(h[field] / h["urls"]), _reasons(h["reasons"], field)]
                    for h in ranked], out, right=(1, 2, 3))
            print(file=out)


def _reasons(reasons: dict[str, int], field: str) -> str:
    """The reasons of one kind (opt-outs or failures) with their counts."""
    wanted = {Status.DISALLOWED} if field == "disallowed" else \
        {Status.FAILED_TO_DOWNLOAD, Status.FAILED_TO_RESIZE}
    picked = []
    for reason, n in reasons.items():
        try:
            if status_of(Reason(reason)) not in wanted:
                continue
        except ValueError:
            pass
        picked.append(f"{reason} {n}")
    return ", ".join(picked)


def _summary_csv(summary: dict[str, Any], out: TextIO) -> None:
    by = summary["by"]
    if by == "status":
        _csv_rows(out, ["status", "count", "share"],
                  ([g["status"], g["count"], g["share"]] for g in summary["groups"]))
    elif by == "reason":
        _csv_rows(out, ["status", "reason", "count", "share"],
                  ([g["status"], g["reason"] or "", g["count"], g["share"]]
                   for g in summary["groups"]))
    else:
        _csv_rows(out, ["host", "urls", "success", "disallowed", "failed", "reasons"],
                  ([h["host"] or "", h["urls"], h["success"], h["disallowed"], h["failed"],
                    ";".join(f"{r}:{n}" for r, n in h["reasons"].items())]
                   for h in summary["groups"]))


# ---------------------------------------------------------------- report


def cmd_report(args: argparse.Namespace) -> int:
    from ..audit.report import write_report
    try:
        summary = write_report(args.output_dir, args.output, examples=args.examples,
                               top=args.top)
    except ConsentFetchError as exc:
        return failed(exc)
    except OSError as exc:
        return usage_error(f"cannot write {args.output}: {exc}")
    print(f"wrote {args.output} ({summary['total']} URLs)")
    return EXIT_OK
