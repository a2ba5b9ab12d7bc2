"""``consentfetch recheck``: decide consent again, as of now, for a run's samples.

    consentfetch recheck OUTPUT_DIR [--headers] [--opt-out-list FILE ...]
                         [--consent PROFILE] [--ignore CHECK ...] [--output NEW_DIR]
                         [--apply [STAMP]] [--allow-private-networks] [--ca-file PEM]

Writes ``rechecks/<UTC stamp>/recheck.parquet`` and ``summary.json`` (into
NEW_DIR with ``--output``) and prints what it found; the run is not changed.
``--apply`` then removes the withdrawn samples from the shards (in place, or
into NEW_DIR as a filtered copy); ``--apply STAMP`` applies an earlier
recheck, as it was reviewed, without deciding again.
Exit 0 whatever was found; 2 for a folder that is not a run or a flag that
would loosen the run's rules.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from .. import config as cfg
from ..progress import duration
from ..recheck.apply import ApplyReport, apply_recheck
from ..recheck.decide import RecheckReport, recheck_shards
from ..recheck.table import CHANGED, KEPT, UNCHECKED, WITHDRAWN, recheck_folder
from .common import EXIT_OK, Handler, cell
from .progress import progress_view


def add_commands(subparsers: Any) -> dict[str, Handler]:
    """Add ``recheck`` to ``subparsers``; returns {"recheck": handler}."""
    p = subparsers.add_parser(
        "recheck", help="decide consent again, as of now, for a run's downloaded samples",
        description="For every downloaded sample of OUTPUT_DIR, ask again whether its site "
                    "still consents: each origin's robots.txt, ai.txt and tdmrep.json fetched "
                    "anew (once per origin, every redirect hop's origin too), the opt-out "
                    "lists, and with --headers each image's response headers (no body). Uses "
                    "the run's own profile, token and ignored checks; flags may tighten them, "
                    "never loosen. Writes rechecks/<UTC stamp>/recheck.parquet and "
                    "summary.json; changes nothing else.")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="the run to recheck")
    p.add_argument("--headers", action="store_true",
                   help="also ask each sample's URL for its response headers: one HEAD "
                        "(or GET closed after the headers) per sample, never the body")
    p.add_argument("--opt-out-list", dest="opt_out_lists", action="append", default=[],
                   metavar="FILE", help="opt-out lists to apply besides the run's own "
                                        "(URL, prefix, host or sha256; repeatable)")
    p.add_argument("--consent", choices=cfg.CONSENT_PROFILES, default=None,
                   help="a stricter profile than the run's (default: the run's)")
    p.add_argument("--ignore", action="append", choices=cfg.CHECKS, default=None,
                   metavar="CHECK", help="the checks to leave off: only ones the run ignored "
                                         "too (default: the run's; repeatable)")
    p.add_argument("--output", metavar="NEW_DIR", default=None,
                   help="write the recheck into NEW_DIR; OUTPUT_DIR is only read (a "
                        "read-only or remote copy)")
    p.add_argument("--allow-private-networks", action="store_true",
                   help="allow requests to loopback and private addresses")
    p.add_argument("--ca-file", metavar="PEM", default=None,
                   help="trust these certificate authorities besides the system's")
    p.add_argument("--apply", nargs="?", const=_NEW, default=None, metavar="STAMP",
                   help="then rewrite the shards without the withdrawn samples (into "
                        "NEW_DIR with --output); with STAMP (a folder name under rechecks/, "
                        "or 'latest'), apply that earlier recheck without deciding again")
    return {"recheck": cmd_recheck}


_NEW = "\0new"  # --apply without a STAMP: apply the recheck this command makes


def cmd_recheck(args: argparse.Namespace) -> int:
    logging.getLogger("consentfetch.progress").setLevel(logging.INFO)
    if args.apply not in (None, _NEW):  # an earlier recheck, as it was reviewed
        stamp = None if args.apply == "latest" else args.apply
        print_apply(apply_recheck(args.output_dir, stamp, output=args.output))
        return EXIT_OK
    report = recheck_shards(
        args.output_dir, opt_out_lists=args.opt_out_lists, consent=args.consent,
        ignore=args.ignore, headers=args.headers, output=args.output,
        allow_private_networks=args.allow_private_networks, ca_file=args.ca_file,
        progress=progress_view())
    print_recheck(report)
    if args.apply == _NEW:
        print_apply(apply_recheck(args.output_dir, report.stamp, output=args.output))
    return EXIT_OK


def print_apply(report: ApplyReport, out: Any = None) -> None:
    """What applying a recheck did, in one or two lines."""
    out = out or sys.stdout
    if report.already_applied:
        print(f"recheck {report.stamp} was already applied to {cell(report.output)}: "
              "nothing to do", file=out)
        return
    copied = f", {report.shards_copied} copied unchanged" if report.shards_copied else ""
    resumed = " (finishing an interrupted apply)" if report.resumed else ""
    print(f"applied recheck {report.stamp}{resumed}: "
          f"{report.samples_withdrawn} sample(s) withdrawn, {report.shards_rewritten} shard(s) "
          f"rewritten{copied}, {report.bytes_removed:,} bytes removed", file=out)
    print(f"dataset: {cell(report.output)}", file=out)


def print_recheck(report: RecheckReport, out: Any = None) -> None:
    """The summary table: kept, withdrawn by reason, changed, unchecked; then the notes."""
    out = out or sys.stdout
    counts, summary = report.counts, report.summary
    print(f"{report.total} sample(s) rechecked in {duration(report.duration)} "
          f"(profile {summary.get('consent_profile')}, "
          f"{'with' if summary.get('headers') else 'without'} --headers)", file=out)
    by_status = summary.get("reasons", {})
    rows = [("kept", counts.get(KEPT, 0), {}),
            ("withdrawn", counts.get(WITHDRAWN, 0), by_status.get(WITHDRAWN, {})),
            ("changed", counts.get(CHANGED, 0), {}),
            ("unchecked", counts.get(UNCHECKED, 0), by_status.get(UNCHECKED, {}))]
    for label, n, reasons in rows:
        print(f"  {label:<12} {n}", file=out)
        for reason, m in sorted(reasons.items(), key=lambda kv: -kv[1]):
            print(f"    {cell(reason):<22} {m}", file=out)
    requests = ", ".join(f"{n} {kind}" for kind, n in report.requests.items()) or "none"
    print(f"requests: {requests}; origins fetched: {report.origin_loads}", file=out)
    for note in ("hops_note", "robots_unreachable_note"):
        if summary.get(note):
            print(f"note: {cell(summary[note])}", file=out)
    for path in summary.get("opt_out_lists_missing", []):
        print(f"note: the run's opt-out list {cell(path)} could not be read; give it again "
              "with --opt-out-list", file=out)
    print(f"written: {cell(report.output_dir)}/{recheck_folder(report.stamp)}/", file=out)
