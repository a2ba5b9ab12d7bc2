"""``consentfetch why``: what happened to a URL (or to a host's URLs), in plain words.

    consentfetch why URL OUTPUT_DIR [--json]
    consentfetch why --host HOST OUTPUT_DIR [--json]

The explanations come from :mod:`consentfetch.audit.why`; this module prints them.
"""

from __future__ import annotations

import argparse
import shutil
import textwrap
from typing import Any

from ..audit import explain_host, explain_url, find_url, hostname, read_audit
from ..errors import ConsentFetchError
from ..safetext import json_for_terminal, redact_userinfo
from .common import EXIT_OK, cell, failed, no_data, note_foreign, usage_error


def add_parser(subparsers: Any) -> None:
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


def cmd_why(args: argparse.Namespace) -> int:
    targets = list(args.targets)
    if args.host is not None:
        if len(targets) != 1:
            return usage_error("why --host HOST takes only OUTPUT_DIR (no URL)")
        output_dir, url = targets[0], None
    else:
        if len(targets) != 2:
            return usage_error("why takes URL OUTPUT_DIR (or --host HOST OUTPUT_DIR)")
        url, output_dir = targets
        url = redact_userinfo(url)  # as stored; never echoed with its password
    try:
        rows = explain_host(output_dir, args.host) if url is None \
            else explain_url(output_dir, url)
    except ConsentFetchError as exc:
        return failed(exc)
    note_foreign(output_dir)
    if not rows:
        return no_data(_why_miss(output_dir, url, args.host))
    if args.json:
        print(json_for_terminal(rows, indent=2, default=str))
        return EXIT_OK
    width = min(100, max(60, shutil.get_terminal_size((100, 24)).columns - 2))
    if url is None:
        print(_host_line(args.host, rows) + "\n")
    for row in rows:
        print(f"{cell(row['url'])}  (key {cell(row['key'])})")
        print(textwrap.fill(cell(row["explanation"]), width, initial_indent="  ",
                            subsequent_indent="  ", break_long_words=False,
                            break_on_hyphens=False))
        print()
    return EXIT_OK


def _host_line(host: str, rows: list[dict[str, Any]]) -> str:
    n = len(rows)
    ok = sum(r["status"] == "success" for r in rows)
    refused = sum(r["status"] == "disallowed" for r in rows)
    return (f"{cell(host)}: {n} URL(s) in this dataset's input; {ok} downloaded, {refused} "
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
