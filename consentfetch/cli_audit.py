"""The audit commands of the ``consentfetch`` command line: ``audit``, ``why``, ``report``.

    consentfetch audit OUTPUT_DIR [--by status|reason|host] [--format table|json|csv]
                       [--status S] [--reason R] [--host H] [--filter EXPR] [--count]
                       [--limit N]
    consentfetch why URL OUTPUT_DIR [--json]
    consentfetch why --host HOST OUTPUT_DIR [--json]
    consentfetch report OUTPUT_DIR [-o report.html] [--examples N] [--top N]

:func:`add_audit_commands` adds the three subcommands to a parser's
subparsers and returns their handlers. A handler prints to stdout (errors to
stderr) and returns an exit code: 0 ok, 1 no data or no match, 2 bad
arguments. Like ``cli.py``, this module prints; the functions it calls log.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

import pyarrow as pa

from .audit import (REASONS, ROW_COLUMNS, STATUSES, SUMMARY_GROUPS, FilterError,
                    completed_shard_count, explain_host, explain_url, find_url, hostname,
                    read_audit, read_columns, read_run, select_rows, summarize_audit)
from .consent.decision import Reason, Status, status_of
from .errors import ConsentFetchError
from .safetext import for_spreadsheet, for_terminal, json_for_terminal, redact_userinfo

EXIT_OK, EXIT_NO_DATA, EXIT_USAGE = 0, 1, 2
FORMATS = ("table", "json", "csv")
Handler = Callable[[argparse.Namespace], int]


def add_audit_commands(subparsers: Any) -> dict[str, Handler]:
    """Add ``audit``, ``why`` and ``report`` to ``subparsers`` (what
    ``ArgumentParser.add_subparsers()`` returns); returns {command: handler}."""
    _add_audit(subparsers)
    _add_why(subparsers)
    _add_report(subparsers)
    return {"audit": cmd_audit, "why": cmd_why, "report": cmd_report}


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


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
    p.add_argument("--limit", type=_positive, metavar="N",
                   help="list at most N rows (default: all); with --by host, the top N "
                        "hosts (default 10)")


def _add_why(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "why", help="explain in plain words what happened to a URL (or a host's URLs)",
        usage="%(prog)s URL OUTPUT_DIR [--json]\n       %(prog)s --host HOST OUTPUT_DIR "
              "[--json]",
        description="Every audit row of URL in OUTPUT_DIR, explained: whether it was "
                    "downloaded, and if not, which signal said no, quoting the file, rule "
                    "and line or the header. URLs match exactly, or else with scheme and "
                    "host in any case and default ports dropped.")
    p.add_argument("targets", nargs="+", metavar="URL OUTPUT_DIR",
                   help="the URL, then the output folder (with --host: only the folder)")
    p.add_argument("--host", help="explain every row whose URL is on this host")
    p.add_argument("--json", action="store_true", help="print a JSON list, for machines")


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
    p.add_argument("--examples", type=_positive, default=3, metavar="N",
                   help="example URLs per reason (default 3)")
    p.add_argument("--top", type=_positive, default=10, metavar="N",
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
        return _usage_error(f"--filter: {exc}")
    except ConsentFetchError as exc:
        return _no_data(str(exc))
    if table.num_rows == 0:
        return _no_data(f"no matching audit rows in {args.output_dir}" if selecting
                        else f"no complete shards in {args.output_dir} (yet)")
    if selecting and not args.count:
        _print_rows(table, args.format, args.limit, out)
        return EXIT_OK
    top = args.limit or 10
    summary = summarize_audit(table, by=args.by, top=top)
    if args.format == "json":
        run = read_run(args.output_dir)
        summary = {"output_dir": args.output_dir, "run_state": run.get("state"),
                   "complete_shards": completed_shard_count(args.output_dir), **summary}
        print(json_for_terminal(summary, indent=2), file=out)
    elif args.format == "csv":
        _summary_csv(summary, out)
    else:
        _summary_table(summary, args.output_dir, out)
    return EXIT_OK


def _usage_error(message: str) -> int:
    print(f"consentfetch: error: {for_terminal(message)}", file=sys.stderr)
    return EXIT_USAGE


def _no_data(message: str) -> int:
    print(f"consentfetch: {for_terminal(redact_userinfo(message))}", file=sys.stderr)
    return EXIT_NO_DATA


def _print_rows(table: pa.Table, fmt: str, limit: int | None, out: TextIO) -> None:
    rows = table.select([c for c in ROW_COLUMNS if c in table.column_names])
    shown = rows.slice(0, limit) if limit else rows
    records = shown.to_pylist()
    if fmt == "json":
        print(json_for_terminal(records, indent=2, default=str), file=out)
    elif fmt == "csv":
        _csv_rows(out, list(ROW_COLUMNS), ([r.get(c) for c in ROW_COLUMNS] for r in records))
    else:
        cells = [[_cell(r.get(c)) for c in ROW_COLUMNS] for r in records]
        _table(list(ROW_COLUMNS), cells, out)
    if shown.num_rows < rows.num_rows:
        print(f"consentfetch: {rows.num_rows - shown.num_rows} more matching row(s) not "
              "shown (--limit)", file=sys.stderr)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return for_terminal(str(value))


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
        for i, cell in enumerate(cells):
            if i == len(cells) - 1:
                parts.append(cell.rjust(widths[i]) if i in right else cell)
            else:
                parts.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    print(line(header), file=out)
    for row in rows:
        print(line(row), file=out)


def _pct(share: float) -> str:
    if share and share < 0.001:
        return "<0.1%"
    return f"{share * 100:.1f}%"


def _summary_table(summary: dict[str, Any], output_dir: str, out: TextIO) -> None:
    run = read_run(output_dir)
    shards = completed_shard_count(output_dir)
    state = run.get("state")
    note = "run in progress" if state == "running" else f"run {state}" if state else "no run.json"
    total = summary["total"]
    print(f"{_cell(output_dir)}: {total} URLs in {shards} complete shard(s) ({note})", file=out)
    print("  " + ", ".join(f"{n} {s} ({_pct(n / total if total else 0)})"
                           for s, n in summary["by_status"].items() if n), file=out)
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
                   [[_cell(h["host"]), str(h["urls"]), str(h[field]),
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


# ---------------------------------------------------------------- why


def cmd_why(args: argparse.Namespace) -> int:
    targets = list(args.targets)
    if args.host is not None:
        if len(targets) != 1:
            return _usage_error("why --host HOST takes only OUTPUT_DIR (no URL)")
        output_dir, url = targets[0], None
    else:
        if len(targets) != 2:
            return _usage_error("why takes URL OUTPUT_DIR (or --host HOST OUTPUT_DIR)")
        url, output_dir = targets
        url = redact_userinfo(url)  # as stored; never echoed with its password
    try:
        rows = explain_host(output_dir, args.host) if url is None \
            else explain_url(output_dir, url)
    except ConsentFetchError as exc:
        return _no_data(str(exc))
    if not rows:
        return _no_data(_why_miss(output_dir, url, args.host))
    if args.json:
        print(json_for_terminal(rows, indent=2, default=str))
        return EXIT_OK
    width = min(100, max(60, shutil.get_terminal_size((100, 24)).columns - 2))
    if url is None:
        print(_host_line(args.host, rows) + "\n")
    for row in rows:
        print(f"{_cell(row['url'])}  (key {_cell(row['key'])})")
        print(textwrap.fill(_cell(row["explanation"]), width, initial_indent="  ",
                            subsequent_indent="  ", break_long_words=False,
                            break_on_hyphens=False))
        print()
    return EXIT_OK


def _host_line(host: str, rows: list[dict[str, Any]]) -> str:
    n = len(rows)
    ok = sum(r["status"] == "success" for r in rows)
    refused = sum(r["status"] == "disallowed" for r in rows)
    return (f"{_cell(host)}: {n} URL(s) in this dataset's input; {ok} downloaded, {refused} "
            f"not downloaded because of an opt-out, {n - ok - refused} failed")


def _why_miss(output_dir: str, url: str | None, host: str | None) -> str:
    if url is None:
        return f"no audit row for host {host} in {output_dir}"
    message = f"no audit row for {url} in {output_dir}"
    try:
        url_host = hostname(url)
        if url_host:
            same = read_audit(output_dir, host=url_host)
            if same.num_rows and find_url(same, url).num_rows == 0:
                message += (f"; {same.num_rows} row(s) for host {url_host}: "
                            f"try consentfetch why --host {url_host} {output_dir}")
    except ConsentFetchError:
        pass
    return message


# ---------------------------------------------------------------- report


def cmd_report(args: argparse.Namespace) -> int:
    from .audit.report import write_report
    try:
        summary = write_report(args.output_dir, args.output, examples=args.examples,
                               top=args.top)
    except ConsentFetchError as exc:
        return _no_data(str(exc))
    except OSError as exc:
        return _usage_error(f"cannot write {args.output}: {exc}")
    print(f"wrote {args.output} ({summary['total']} URLs)")
    return EXIT_OK
