"""The ``consentfetch`` command line.

    consentfetch download INPUT OUTPUT_DIR [options]
    consentfetch audit OUTPUT_DIR [--by status|reason|host] [--format table|json|csv] [...]
    consentfetch why URL OUTPUT_DIR | consentfetch why --host HOST OUTPUT_DIR
    consentfetch report OUTPUT_DIR -o report.html
    consentfetch check URL [URL...]
    consentfetch demo [OUTPUT_DIR]

This module is the only one that prints; everything else logs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import config as cfg
from ._version import __version__
from .cli_audit import add_audit_commands
from .demo import reason_examples, run_demo
from .distribute import StopRequested
from .errors import ConsentFetchError, RunInterrupted
from .run import Report, fetch_shards
from .safetext import for_terminal, redact_userinfo

EXIT_ERROR = 2
_AUDIT_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {}
EXIT_INTERRUPTED = 130


def _add_download_options(p: argparse.ArgumentParser) -> None:
    d = cfg.FetchConfig.__dataclass_fields__
    g = p.add_argument_group("input")
    g.add_argument("--input-format", choices=cfg.INPUT_FORMATS,
                   help="default: from the file name (.parquet, .csv, .tsv, .txt, .jsonl, +.gz)")
    g.add_argument("--url-col", default=d["url_col"].default)
    g.add_argument("--caption-col", help="column with the caption (written as <key>.txt)")
    g.add_argument("--save-additional-columns", metavar="COL[,COL...]",
                   help="input columns to keep in the audit and the sample .json")
    g = p.add_argument_group("image")
    g.add_argument("--image-size", type=int, default=d["image_size"].default)
    g.add_argument("--resize-mode", choices=cfg.RESIZE_MODES, default=d["resize_mode"].default)
    g.add_argument("--resize-only-if-bigger", action="store_true")
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
                        "connection errors, HTTP 429/5xx) of complete shards")
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


def _add_check_options(p: argparse.ArgumentParser) -> None:
    """The options of ``check``: the download's consent and network options that matter."""
    d = cfg.FetchConfig.__dataclass_fields__
    p.add_argument("--consent", choices=cfg.CONSENT_PROFILES, default=d["consent"].default)
    p.add_argument("--user-agent-token", default=d["user_agent_token"].default)
    p.add_argument("--contact", default=d["contact"].default)
    p.add_argument("--ignore", action="append", choices=cfg.CHECKS, default=[], metavar="CHECK")
    p.add_argument("--opt-out-list", dest="opt_out_lists", action="append", default=[],
                   metavar="FILE")
    p.add_argument("--opt-in-list", dest="opt_in_lists", action="append", default=[],
                   metavar="FILE")
    p.add_argument("--ai-crawler-token", dest="ai_crawler_tokens", action="append", default=[],
                   metavar="TOKEN")
    p.add_argument("--timeout", type=float, default=d["timeout"].default)
    p.add_argument("--max-bytes", type=int, default=d["max_bytes"].default)
    p.add_argument("--max-crawl-delay", type=float, default=d["max_crawl_delay"].default)
    p.add_argument("--allow-private-networks", action="store_true")
    p.add_argument("--allow-network", dest="allowed_networks", action="append", default=[],
                   metavar="CIDR")
    p.add_argument("--ca-file", metavar="PEM")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="consentfetch",
        description="Download image datasets while honouring every machine-readable opt-out.")
    parser.add_argument("--version", action="version", version=f"consentfetch {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True)
    _AUDIT_HANDLERS.update(add_audit_commands(sub))

    p = sub.add_parser("download", help="download a URL list into webdataset shards")
    p.add_argument("input", help="URL list: parquet, csv, tsv, txt or jsonl (local or fsspec)")
    p.add_argument("output_dir")
    _add_download_options(p)

    p = sub.add_parser("check", help="live: would these URLs be downloaded, and why?")
    p.add_argument("urls", nargs="+", metavar="URL")
    p.add_argument("--json", action="store_true", help="one JSON object per URL, one per line")
    _add_check_options(p)

    p = sub.add_parser("demo", help="run against a bundled local site and show the audit")
    p.add_argument("output_dir", nargs="?", default="consentfetch-demo")
    return parser


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
    print(f"{total} URLs: " + ", ".join(f"{n} {s}" for s, n in report.counts.items()), file=out)
    for reason, n in sorted(report.reasons.items(), key=lambda kv: -kv[1]):
        print(f"  {reason:<22} {n}", file=out)
    print(f"shards written: {report.shards_written}"
          + (f" (+{report.shards_skipped} complete from an earlier run)"
             if report.shards_skipped else ""), file=out)
    print(f"output: {report.output_dir}  (audit: *.parquet, origins.parquet, run.json)",
          file=out)


def _cmd_download(args: argparse.Namespace) -> int:
    report = fetch_shards(args.input, args.output_dir, progress=True, **_download_options(args))
    print_report(report)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 when every URL would be downloaded, 1 when any would not."""
    from .check import check_urls
    options = {k: v for k, v in vars(args).items()
               if k not in ("command", "urls", "json", "verbose")}
    results = check_urls(args.urls, **options)
    for result in results:
        if args.json:
            # ensure_ascii (the default) escapes every non-ASCII character, C1 included.
            print(json.dumps(result.to_dict(), default=str))
        else:
            print(_describe_check(result))
    return 0 if all(r.decision == "allowed" for r in results) else 1


def _describe_check(result: Any) -> str:
    if result.decision == "allowed":
        head = "WOULD BE DOWNLOADED: no opt-out signal found"
    else:
        head = f"NOT DOWNLOADED ({result.decision}: {result.reason})"
    lines = [result.url, f"  {head}"]
    if result.evidence:
        lines.append(f"  why: {result.evidence}")
    if len(result.hops) > 1:
        lines.append("  requested: " + " -> ".join(result.hops))
    for f in result.origin_files:
        status = f"HTTP {f['http_status']}" if f["http_status"] else (f["error"] or "no answer")
        digest = f", sha256 {f['sha256'][:12]}…" if f["sha256"] else ""
        lines.append(f"  {f['kind']:<12} {f['outcome']:<11} {status}{digest}  {f['url']}")
    for name, values in result.headers.items():
        for value in values:
            lines.append(f"  header  {name}: {value}")
    # URLs, evidence (robots.txt lines), file errors and header values are the
    # site's words: each line is escaped whole, so none can repaint the screen.
    return "\n".join(for_terminal(line) for line in lines) + "\n"


def _cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo; print what happened and why."""
    report = run_demo(args.output_dir, announce=print)
    print_report(report)
    print("\nwhy some URLs were not downloaded (one example per reason):")
    for row in reason_examples(args.output_dir):
        print(f"  {row['url']}\n    {row['reason']}: {row['evidence']}")
    last = report.shards_written + report.shards_skipped - 1
    print(f"\nread the shards with webdataset: {args.output_dir}/{{00000..{last:05d}}}.tar\n"
          f"read the audit in Python: consentfetch.read_audit({args.output_dir!r})")
    return 0


def _shown(text: str) -> str:
    """A message for the terminal: URL credentials redacted, controls escaped."""
    return for_terminal(redact_userinfo(text))


class _TerminalFormatter(logging.Formatter):
    """Log lines shown with :func:`_shown`: a logged URL or header value can neither
    repaint the terminal, nor forge a second log line, nor show a password."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return _shown(super().formatMessage(record))


def _stop_on_sigterm() -> None:
    """SIGTERM stops a download like Ctrl-C does (the CLI only: the library never
    installs signal handlers)."""
    def handler(signum: int, frame: object) -> None:
        raise StopRequested()
    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 \
        else logging.DEBUG
    handler = logging.StreamHandler()
    handler.setFormatter(_TerminalFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    if args.command == "download":
        logging.getLogger("consentfetch.progress").setLevel(logging.INFO)
        _stop_on_sigterm()
    command = {"download": _cmd_download, "check": _cmd_check, "demo": _cmd_demo,
               **_AUDIT_HANDLERS}[args.command]
    try:
        return command(args)
    except RunInterrupted as exc:
        print(f"\nconsentfetch: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("\nconsentfetch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ConsentFetchError as exc:
        print(f"consentfetch: error: {_shown(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader went away (`consentfetch audit out/ | head`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
