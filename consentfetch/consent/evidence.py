"""Evidence: a verdict's proof as data, and its one rendering as text.

One function per kind of proof. Each takes the structured verdict (a
:class:`~.robots.RobotsVerdict`, a :class:`~.tdmrep.TdmVerdict`, a
:class:`~.registry.ListHit`, ...) and the origin file it came from, and
returns an :class:`~.decision.Evidence` whose ``text`` is the sentence the
audit's ``evidence`` column has always held. Nothing ever parses that text
back: readers use the fields (``evidence_file``, ``evidence_line``, ...).
Pure: plain values in, plain values out.
"""

from __future__ import annotations

from typing import Any

from yarl import URL

from .aipref import UsageVerdict
from .contentsignal import SignalVerdict
from .decision import Evidence, Signal
from .headers import XRobotsVerdict
from .metadata import MetadataVerdict
from .origins import OriginFile
from .registry import ListHit
from .robots import CrawlDelay, RobotsVerdict
from .rsl import RslVerdict
from .tdmrep import TdmVerdict


def file_label(record: OriginFile | None, fallback: str) -> str:
    """``https://h/robots.txt (fetched 2026-11-21 14:02 UTC, sha256 3f1c…)``."""
    if record is None:
        return fallback
    digest = f", sha256 {record.sha256[:12]}…" if record.sha256 else ""
    return f"{record.url} (fetched {record.fetched_at:%Y-%m-%d %H:%M} UTC{digest})"


def _file(record: OriginFile | None, hop: URL | None) -> dict[str, Any]:
    """The fields that name the fetch of an origin file."""
    if record is None:
        return {"hop": None if hop is None else str(hop)}
    return {"file": record.url, "file_sha256": record.sha256, "fetched_at": record.fetched_at,
            "hop": None if hop is None else str(hop)}


def rule_denial(signal: Signal, record: OriginFile | None, url: URL,
                verdict: RobotsVerdict) -> Evidence:
    """A robots.txt or ai.txt Allow/Disallow rule that disallows ``url``."""
    text = (f"{file_label(record, str(signal))} disallows {url.raw_path_qs} "
            f"for user-agent {verdict.group}: rule `{verdict.rule}` on line {verdict.line}")
    return Evidence(signal, text, line=verdict.line, rule=verdict.rule, agent=verdict.group,
                    **_file(record, url))


def ai_crawler(record: OriginFile | None, url: URL, token: str,
               verdict: RobotsVerdict) -> Evidence:
    """robots.txt blocks an AI-training crawler's token while allowing others."""
    text = (f"{file_label(record, 'robots.txt')} disallows {url.raw_path_qs} for "
            f"AI-training crawler {token} (group `User-agent: {verdict.group}`): rule "
            f"`{verdict.rule}` on line {verdict.line}, while allowing other crawlers")
    return Evidence(Signal.ROBOTS_TXT, text, line=verdict.line, rule=verdict.rule,
                    agent=token, **_file(record, url))


def robots_unreachable(record: OriginFile | None, url: URL) -> Evidence:
    """robots.txt could not be fetched: RFC 9309 says assume complete disallow."""
    text = (f"{record.url if record else 'robots.txt'} could not be fetched "
            f"({record.error if record else 'unknown error'}); "
            "RFC 9309 §2.3.1.4: assume complete disallow")
    return Evidence(Signal.ROBOTS_TXT, text, **_file(record, url))


def origin_unreached(error: str, record: OriginFile | None, url: URL) -> Evidence:
    """The host was never reached while fetching robots.txt (DNS, refused, TLS...)."""
    where = f" (while fetching {record.url})" if record else ""
    return Evidence(Signal.NETWORK, error + where, **_file(record, url))


def robots_usage(record: OriginFile | None, url: URL, verdict: UsageVerdict) -> Evidence:
    """A robots.txt ``Content-Usage`` rule."""
    text = f"{file_label(record, 'robots.txt')}: {verdict.evidence}"
    rule = verdict.rule
    return Evidence(Signal.ROBOTS_TXT, text, line=rule.line if rule else None,
                    rule=rule.text if rule else None, **_file(record, url))


def content_signal(record: OriginFile | None, url: URL, verdict: SignalVerdict,
                   group: str) -> Evidence:
    """A robots.txt ``Content-Signal`` line (``group``: the User-agent value that
    selected the group it stands in)."""
    rule = verdict.record
    where = (f"group `User-agent: {group}`" if verdict.in_group
             else "before the first User-agent line, read as addressed to every crawler")
    text = (f"{file_label(record, 'robots.txt')} line {rule.line if rule else '?'} "
            f"`{rule.text if rule else 'Content-Signal'}` ({where}): {verdict.item}")
    return Evidence(Signal.ROBOTS_TXT, text, line=rule.line if rule else None,
                    rule=rule.text if rule else None,
                    agent=group if verdict.in_group else None, **_file(record, url))


def file_unreachable(signal: Signal, record: OriginFile, url: URL, meaning: str) -> Evidence:
    """ai.txt answered 2xx but could not be read whole: read the safe way."""
    text = f"{record.url} {record.error}: what it says is unknown, so it is {meaning}"
    return Evidence(signal, text, **_file(record, url))


def tdm_file(record: OriginFile | None, url: URL | None, verdict: TdmVerdict) -> Evidence:
    """A reservation (or permission) in tdmrep.json, or its fail-safe reading."""
    text = f"{file_label(record, 'tdmrep.json')}: {verdict.evidence}"
    entry = verdict.entry
    return Evidence(Signal.TDMREP_JSON, text, line=entry.number if entry else None,
                    rule=entry.written if entry else None,
                    **_file(record, url))


def rsl_licence(record: OriginFile, url: URL, verdict: RslVerdict, named_by: str) -> Evidence:
    """An RSL licence whose ``<content>`` for ``url`` does not license AI training."""
    text = (f"RSL licence {file_label(record, record.url)} named by {named_by}: "
            f"<content url=\"{verdict.content_url}\"> {verdict.term}")
    return Evidence(Signal.LICENCE, text, rule=verdict.term, **_file(record, url))


def rsl_unreachable(record: OriginFile, url: URL, named_by: str) -> Evidence:
    """An RSL licence that could not be fetched or is not valid RSL (strict)."""
    text = (f"RSL licence {record.url} named by {named_by}: licence unreachable "
            f"({record.error}); strict: the asset is unlicensed")
    return Evidence(Signal.LICENCE, text, rule="licence unreachable", **_file(record, url))


def x_robots_tag(verdict: XRobotsVerdict) -> Evidence:
    """An ``X-Robots-Tag`` directive on the image's response."""
    return Evidence(Signal.HEADER, f"X-Robots-Tag: {verdict.header} ({verdict.directive})",
                    rule=f"X-Robots-Tag: {verdict.header}")


def header(text: str) -> Evidence:
    """A response header line that decided (``tdm-reservation``, ``Content-Usage``)."""
    return Evidence(Signal.HEADER, text, rule=text)


def list_hit(hit: ListHit) -> Evidence:
    """An entry of a user-supplied opt-out or opt-in list."""
    return Evidence(Signal.LIST, hit.evidence, file=hit.list_name, rule=f"{hit.kind} {hit.entry}")


def metadata(signal: Signal, verdict: MetadataVerdict, fallback: str) -> Evidence:
    """Rights metadata embedded in the image (IPTC in XMP, C2PA)."""
    text = verdict.evidence or fallback
    return Evidence(signal, text, rule=text)


def crawl_delay(record: OriginFile | None, url: URL, delay: CrawlDelay, cap: float,
                shown: str, group: str) -> Evidence:
    """A robots.txt ``Crawl-delay`` longer than the run accepts."""
    text = (f"{record.url if record is not None else 'robots.txt'} line {delay.line} "
            f"`{shown}` (user-agent {group}) asks for "
            f"{delay.seconds:g} s between requests, more than --max-crawl-delay {cap:g} s; "
            "not requested, since we never request faster than a site asks (raise "
            "--max-crawl-delay to fetch it, e.g. with --retry-failed)")
    return Evidence(Signal.ROBOTS_TXT, text, line=delay.line, rule=delay.text,
                    agent=delay.group or "*", **_file(record, url))


def no_opt_in(token: str) -> Evidence:
    """``--consent opt-in`` and no explicit permission."""
    text = ("--consent opt-in: no explicit permission found (none of: an opt-in "
            f"list entry, a robots.txt group for {token}, Content-Usage "
            "train-ai=y, Content-Signal ai-train=yes, tdm-reservation 0, IPTC DMI-ALLOWED, "
            "C2PA allowed)")
    return Evidence(Signal.PROFILE, text, rule="--consent opt-in")
