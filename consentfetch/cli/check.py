"""``consentfetch check``: live, would these URLs be downloaded, and why?

    consentfetch check URL [URL...] [--json] [options]

Exit 0 when every URL would be downloaded, 1 when any would not.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from .. import config as cfg
from ..safetext import for_terminal
from .common import Handler

if TYPE_CHECKING:
    from ..check import CheckResult


def add_commands(subparsers: Any) -> dict[str, Handler]:
    """Add ``check`` to ``subparsers``; returns {"check": handler}."""
    p = subparsers.add_parser("check", help="live: would these URLs be downloaded, and why?")
    p.add_argument("urls", nargs="+", metavar="URL")
    p.add_argument("--json", action="store_true", help="one JSON object per URL, one per line")
    _add_check_options(p)
    return {"check": cmd_check}


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


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 when every URL would be downloaded, 1 when any would not."""
    from ..check import check_urls  # late: the other commands start without it
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


def _describe_check(result: CheckResult) -> str:
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
