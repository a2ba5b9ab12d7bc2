"""``consentfetch download``: a URL list in, webdataset shards and a full audit out.

    consentfetch download INPUT OUTPUT_DIR [options]

The options are :class:`~consentfetch.config.FetchConfig`'s fields as flags;
:func:`~consentfetch.run.fetch_shards` does the work, this module shows its
progress and prints its report.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

from .. import config as cfg
from ..consent.metadata import C2PA_AVAILABLE
from ..distribute import StopRequested
from ..progress import duration
from ..run import Report, fetch_shards
from .common import EXIT_OK, Handler
from .progress import progress_view


def add_commands(subparsers: Any) -> dict[str, Handler]:
    """Add ``download`` to ``subparsers``; returns {"download": handler}."""
    p = subparsers.add_parser("download", help="download a URL list into webdataset shards",
                              formatter_class=_DefaultsShown)
    p.add_argument("input", help="URL list: parquet, csv, tsv, txt or jsonl (local or fsspec)")
    p.add_argument("output_dir")
    _add_download_options(p)
    for action in p._actions:  # an option without help text still shows its default
        if action.help is None and _DefaultsShown.shows(action.default):
            action.help = "(default: %(default)s)"
    return {"download": cmd_download}


class _DefaultsShown(argparse.HelpFormatter):
    """``--help`` shows each option's default, where it has one its help does not name."""

    @staticmethod
    def shows(default: object) -> bool:
        """Whether a default says something worth showing (not None, off or empty)."""
        return not (default is None or default is False or default is argparse.SUPPRESS
                    or default == [] or default == ())

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or not self.shows(action.default) or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


def _add_download_options(p: argparse.ArgumentParser) -> None:
    d = cfg.FetchConfig.__dataclass_fields__
    g = p.add_argument_group("input")
    g.add_argument("--input-format", choices=cfg.INPUT_FORMATS,
                   help="default: from the file name (.parquet, .csv, .tsv, .txt, .jsonl, +.gz)")
    g.add_argument("--url-col", default=d["url_col"].default)
    g.add_argument("--caption-col", help="column with the caption (written as <key>.txt)")
    g.add_argument("--save-additional-columns", metavar="COL[,COL...]",
                   help="input columns to keep in the audit and the sample .json")
    g.add_argument("--bbox-col", metavar="COLUMN",
                   help="a column of [x0, y0, x1, y1] boxes (relative coordinates, "
                        "img2dataset's format) blurred before encoding, e.g. DataComp's faces")
    g.add_argument("--verify-hash", metavar="COLUMN[,sha256|md5]",
                   help="the input column holding each URL's expected digest (sha256 unless "
                        "named): a body with another digest is hash_mismatch and not kept")
    g = p.add_argument_group("image")
    g.add_argument("--image-size", type=int, default=d["image_size"].default)
    g.add_argument("--resize-mode", choices=cfg.RESIZE_MODES, default=d["resize_mode"].default)
    g.add_argument("--resize-only-if-bigger", action="store_true")
    g.add_argument("--skip-reencode", action="store_true",
                   help="keep the downloaded bytes when no resize is needed and they are "
                        "already in --encode-format: the tar holds what the site served, "
                        "and the audit's sha256 is the sha256 of the tar member")
    g.add_argument("--encode-format", choices=cfg.ENCODE_FORMATS,
                   default=d["encode_format"].default)
    g.add_argument("--encode-quality", type=int,
                   help="1-100 for jpg/webp (default 95); zlib level 0-9 for png (default 9)")
    g.add_argument("--min-image-size", type=int, default=d["min_image_size"].default)
    g.add_argument("--max-aspect-ratio", type=float, help="default: no limit")
    g.add_argument("--max-image-pixels", type=int, default=d["max_image_pixels"].default)
    g.add_argument("--max-decoded-bytes", type=int, default=d["max_decoded_bytes"].default,
                   help="bytes of decoded images in flight per process, shared by its "
                        "image threads; an image that alone needs more is image_too_large "
                        "(default: 1 GiB)")
    g = p.add_argument_group("work and output")
    g.add_argument("--shard-size", type=int, default=d["shard_size"].default)
    g.add_argument("--processes", type=int, help="worker processes (default: number of cores)")
    g.add_argument("--distributor", choices=cfg.DISTRIBUTORS, default="multiprocessing",
                   help="multiprocessing (this machine), spark or ray (the extras "
                        "consentfetch[spark] / consentfetch[ray]; see 'Running on a cluster' "
                        "in README.md)")
    resume = g.add_mutually_exclusive_group()
    resume.add_argument("--resume", dest="overwrite", action="store_false", default=False,
                        help="keep complete shards of an earlier run in OUTPUT_DIR (default)")
    resume.add_argument("--overwrite", dest="overwrite", action="store_true",
                        help="delete an earlier run in OUTPUT_DIR and start over")
    g.add_argument("--retry-failed", action="store_true",
                   help="also re-attempt the transient download failures (timeouts, DNS, "
                        "connection errors, HTTP 429/5xx, a Crawl-delay over "
                        "--max-crawl-delay) of complete shards")
    g = p.add_argument_group("network")
    g.add_argument("--concurrency", type=int, default=d["concurrency"].default,
                   help="requests in flight per process")
    g.add_argument("--per-host-concurrency", type=int,
                   default=d["per_host_concurrency"].default,
                   help="requests in flight per host (per process)")
    g.add_argument("--min-host-delay", type=float, default=d["min_host_delay"].default,
                   help="seconds between request starts to one host (robots.txt Crawl-delay "
                        "raises it)")
    g.add_argument("--max-host-failures", type=int, default=d["max_host_failures"].default,
                   help="failed attempts in a row before a host is given up for the run "
                        "(0: never)")
    g.add_argument("--max-retry-after", type=float, default=d["max_retry_after"].default,
                   help="longest Retry-After (seconds) we wait for; longer is not retried")
    g.add_argument("--max-crawl-delay", type=float, default=d["max_crawl_delay"].default,
                   help="longest robots.txt Crawl-delay (seconds) we keep to; a host asking "
                        "for more is not requested (crawl_delay_too_long)")
    g.add_argument("--timeout", type=float, default=d["timeout"].default,
                   help="seconds: total deadline of one attempt at a URL (connect + headers + "
                        "body, all redirect hops together)")
    g.add_argument("--retries", type=int, default=d["retries"].default,
                   help="extra attempts on timeouts, resets, 429 and 5xx")
    g.add_argument("--retry-backoff", type=float, default=d["retry_backoff"].default)
    g.add_argument("--max-bytes", type=int, default=d["max_bytes"].default)
    g.add_argument("--max-redirects", type=int, default=d["max_redirects"].default)
    g.add_argument("--user-agent-token", default=d["user_agent_token"].default,
                   help="our robots.txt product token and the start of the User-Agent")
    g.add_argument("--contact", default=d["contact"].default,
                   help="a URL or e-mail put in the User-Agent so site owners can reach you")
    g.add_argument("--allow-private-networks", action="store_true",
                   help="allow loopback and private addresses (tests, intranets)")
    g.add_argument("--allow-network", dest="allowed_networks", action="append", default=[],
                   metavar="CIDR", help="let one network through the address guard "
                                        "(repeatable), e.g. 10.20.0.0/16")
    g.add_argument("--resolver", choices=("threaded", "async"), default="threaded",
                   help="DNS resolver: the system's (threaded) or aiodns (async; needs "
                        "consentfetch[dns])")
    g.add_argument("--ca-file", metavar="PEM", help="also trust the certificate authorities "
                                                  "in this file (certificates are always "
                                                  "verified)")
    g = p.add_argument_group("consent")
    g.add_argument("--consent", choices=cfg.CONSENT_PROFILES, default=d["consent"].default,
                   help="strict: every signal, most restrictive reading; standard: signals "
                        "addressed to all bots or to our token; opt-in: only with permission")
    g.add_argument("--opt-out-list", dest="opt_out_lists", action="append", metavar="FILE",
                   default=[], help="URLs, URL prefixes, hosts or sha256 never to download "
                                    "(parquet, csv, jsonl or txt; repeatable)")
    g.add_argument("--opt-in-list", dest="opt_in_lists", action="append", metavar="FILE",
                   default=[], help="with --consent opt-in: entries that count as permission")
    g.add_argument("--ignore", action="append", choices=cfg.CHECKS, default=[],
                   metavar="CHECK", help="turn a consent check off (recorded in run.json and "
                                         f"every audit row; repeatable): {', '.join(cfg.CHECKS)}")
    g.add_argument("--ai-crawler-token", dest="ai_crawler_tokens", action="append", default=[],
                   metavar="TOKEN", help="add a token to the known AI-training crawlers")
    g.add_argument("--save-consent-files", action="store_true",
                   help="keep the bodies of robots.txt, ai.txt and tdmrep.json in "
                        "origins.parquet")


def _download_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {k: v for k, v in vars(args).items()
               if k not in ("command", "input", "output_dir", "verbose")}
    cols = options.pop("save_additional_columns")
    options["save_additional_columns"] = [c.strip() for c in cols.split(",") if c.strip()] \
        if cols else ()
    return options


def print_report(report: Report, out: Any = None) -> None:
    out = out or sys.stdout
    total = report.total
    if total == 0:
        print("0 URLs: the input holds no rows, so nothing was downloaded", file=out)
    else:
        print(f"{total} URLs: " + ", ".join(f"{n} {s}" for s, n in report.counts.items()),
              file=out)
    for reason, n in sorted(report.reasons.items(), key=lambda kv: -kv[1]):
        print(f"  {reason:<22} {n}", file=out)
    if total and report.duration > 0:
        images = report.counts.get("success", 0)
        print(f"in {duration(report.duration)}: {images / report.duration:.1f} images/s, "
              f"{total / report.duration:.1f} rows/s", file=out)
    print(f"shards written: {report.shards_written}"
          + (f" (+{report.shards_skipped} complete from an earlier run)"
             if report.shards_skipped else ""), file=out)
    print(f"output: {report.output_dir}  (audit: *.parquet, origins.parquet, run.json)",
          file=out)
    blocked = report.reasons.get("blocked_address", 0)
    if blocked and not report.counts.get("success"):
        print(BLOCKED_HINT.format(n=blocked), file=out)


def cmd_download(args: argparse.Namespace) -> int:
    logging.getLogger("consentfetch.progress").setLevel(logging.INFO)
    _stop_on_sigterm()
    options = _download_options(args)
    if "c2pa" not in options.get("ignore", ()) and not C2PA_AVAILABLE:
        print(C2PA_MISSING, file=sys.stderr)
    report = fetch_shards(args.input, args.output_dir, progress=progress_view(), **options)
    print_report(report)
    return EXIT_OK


# Said once at the start of a run, on the terminal (run.json and the report say it too).
C2PA_MISSING = ("consentfetch: note: C2PA/CAWG training-mining assertions are not checked: "
                "c2pa-python is not installed (pip install 'consentfetch[c2pa]'; "
                "--ignore c2pa silences this note)")
# A run whose refusals are all the address guard's, on private addresses, most likely
# points at an intranet or a local test site.
BLOCKED_HINT = ("hint: {n} URL(s) were blocked_address: they resolve to loopback, private or "
                "reserved addresses, which are refused by default. For an intranet or a local "
                "site, pass --allow-private-networks (or --allow-network CIDR for one network).")


def _stop_on_sigterm() -> None:
    """SIGTERM stops a download like Ctrl-C does (the CLI only: the library never
    installs signal handlers)."""
    def handler(signum: int, frame: object) -> None:
        raise StopRequested()
    signal.signal(signal.SIGTERM, handler)
