"""``why``: every audit row of one URL (or one host) in plain words.

For the site owner or artist who asks "was my opt-out honoured?". A row's
sentence is built from its data: the reason code's wording in the
:mod:`catalogue`, and where the row has them the ``evidence_*`` columns (the
file, its full sha256 and fetch time, the line, the rule, the agent). The
evidence text is quoted, never parsed: a row without the columns (written by
an older version) gets the catalogue's sentence around its evidence text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa

from ..consent.decision import Reason, Signal, Status
from ..consent.headers import AI_DIRECTIVES, SEARCH_DIRECTIVES, parse_x_robots_tag
from ..consent.robots import RobotsPolicy
from .catalogue import reason_wording, status_wording
from .hosts import find_url, origin_of
from .img2dataset import IMG2DATASET
from .read import ROW_COLUMNS, open_output, read_audit, written_by
from .rechecks import recheck_rows, recheck_sentence, recheck_stamps

Row = Mapping[str, Any]


def explain_row(row: Row, *, checked: bool = True) -> str:
    """One audit row in plain words, for a site owner::

        >>> explain_row({"status": "disallowed", "reason": "robots_disallowed",
        ...              "url": "https://example.com/art/a.jpg",
        ...              "evidence_signal": "robots.txt",
        ...              "evidence_file": "https://example.com/robots.txt",
        ...              "evidence_file_sha256": "3f1c…(64 hex digits)",
        ...              "evidence_fetched_at": datetime(2026, 11, 21, 14, 2),
        ...              "evidence_line": 4, "evidence_rule": "Disallow: /art/",
        ...              "evidence_agent": "*", "evidence": "…"})
        'Not downloaded: your robots.txt at https://example.com/robots.txt (fetched
        2026-11-21 14:02 UTC, sha256 3f1c…) disallows /art/a.jpg for user-agent *, rule
        `Disallow: /art/` on line 4. The image itself was never requested.'

    ``checked=False`` for a row of a folder another tool wrote (img2dataset),
    where no consent check was recorded.
    """
    status = str(row.get("status") or "")
    wording = status_wording(status)
    head = wording.verdict if wording else f"Status {status or 'unknown'}"
    if status == Status.SUCCESS:
        text = _explain_success(row, checked)
    elif row.get("withdrawn_at") is not None:
        text = _explain_withdrawn(row)
    else:
        text = f"{head}: " + _explain_reason(row)
    return text + _explain_context(row)


def _explain_success(row: Row, checked: bool = True) -> str:
    parts = ["Downloaded"]
    when = _when(row.get("decided_at"))
    if when:
        parts.append(f" on {when}")
    if row.get("http_status"):
        parts.append(f" (HTTP {row['http_status']})")
    text = "".join(parts) + (": no opt-out signal applied to it" if checked else
                             " by img2dataset, which recorded no consent check")
    if row.get("key"):
        text += f", and it is in the dataset as sample {row['key']}"
        if row.get("width") and row.get("height"):
            text += f" ({row['width']}x{row['height']}"
            if row.get("original_width") and row.get("original_height"):
                text += f", resized from {row['original_width']}x{row['original_height']}"
            text += ")"
    text += "."
    if row.get("sha256"):
        text += f" sha256 of the bytes received: {row['sha256']}."
    return text


# What a denial's wording says of a URL never requested, untrue of a withdrawn sample.
_NEVER_REQUESTED = (" The image itself was never requested.", " It was never requested.")


def _explain_withdrawn(row: Row) -> str:
    """A sample downloaded, then removed by an applied recheck (``withdrawn_at``)."""
    reason = _explain_reason(row)
    for words in _NEVER_REQUESTED:
        reason = reason.replace(words, "")
    on = _when(row.get("decided_at"))
    text = (f"Withdrawn from the dataset on {_when(row.get('withdrawn_at'))}: it was "
            f"downloaded{' as sample ' + str(row['key']) if row.get('key') else ''}, then a "
            f"recheck{' on ' + on if on else ''} found that the site opted out. {reason}")
    if row.get("sha256"):
        text += f" sha256 of the bytes received then: {row['sha256']}."
    return text


def _explain_context(row: Row) -> str:
    bits = []
    profile = row.get("consent_profile")
    if profile:
        bits.append(f"consent profile: {profile}")
    ignored = row.get("ignored_checks")
    if ignored:
        bits.append(f"checks turned off for this run: {ignored.replace(',', ', ')}")
    when = _when(row.get("decided_at"))
    if when and row.get("status") != Status.SUCCESS:
        bits.insert(0, f"decided {when}")
    return f" ({'; '.join(bits)}.)" if bits else ""


def _explain_reason(row: Row) -> str:
    reason = str(row.get("reason") or "")
    evidence = str(row.get("evidence") or "").strip()
    special = _SPECIAL.get(reason)
    if special is not None and row.get("evidence_signal"):
        text = special(row, evidence)
        if text:
            return text
    wording = reason_wording(reason)
    if wording is None:
        text = f"reason {reason or 'unknown'}"
        return text + (f": {evidence}." if evidence else ".")
    return wording.explanation.format(
        evidence=evidence.rstrip(".") or "no evidence was recorded")


# ---------------------------------------------------------------- sentences from data


def _file_words(row: Row) -> str:
    """``https://h/robots.txt (fetched 2026-11-21 14:02 UTC, sha256 <full digest>)``."""
    when = _when(row.get("evidence_fetched_at"))
    sha = row.get("evidence_file_sha256")
    facts = ", ".join(f for f in (f"fetched {when}" if when else "",
                                  f"sha256 {sha}" if sha else "") if f)
    return f"{row['evidence_file']} ({facts})" if facts else str(row["evidence_file"])


def _whose(row: Row, kind: str) -> str:
    """"your robots.txt at X", or, after a redirect to another origin, "the URL
    redirected to another site, and that site's robots.txt at X"."""
    if origin_of(row.get("url")) not in (None, origin_of(row.get("evidence_file"))):
        return f"the URL redirected to another site, and that site's {kind} at"
    return f"your {kind} at"


def _target(row: Row) -> str:
    """The path the rule disallows: the row URL's, when that very rule disallows it;
    otherwise (a redirect within the site) the URL it led to."""
    url, rule = row.get("url"), row.get("evidence_rule")
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return "the URL it led to"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    verdict = RobotsPolicy.parse(f"User-agent: *\n{rule}\n").check(path, "*")
    return path if not verdict.allowed else "the URL it was redirected to"


def _has_rule(row: Row) -> bool:
    return bool(row.get("evidence_file")) and row.get("evidence_line") is not None \
        and row.get("evidence_rule") is not None


def _rule_file(kind: str, signal: Signal) -> _Explainer:
    def explain(row: Row, evidence: str) -> str | None:
        if row.get("evidence_signal") != signal or not _has_rule(row):
            return None
        return (f"{_whose(row, kind)} {_file_words(row)} disallows {_target(row)} for "
                f"user-agent {row.get('evidence_agent')}, rule `{row['evidence_rule']}` on "
                f"line {row['evidence_line']}. The image itself was never requested.")
    return explain


def _ai_crawler(row: Row, evidence: str) -> str | None:
    if row.get("evidence_signal") != Signal.ROBOTS_TXT or not _has_rule(row):
        return None
    return (f"{_whose(row, 'robots.txt')} {_file_words(row)} blocks the AI-training crawler "
            f"{row.get('evidence_agent')} from {_target(row)} (rule `{row['evidence_rule']}` "
            f"on line {row['evidence_line']}) while letting other crawlers in. The strict "
            "consent profile reads that as a refusal of AI training, so the image was never "
            "requested.")


def _unreachable(row: Row, evidence: str) -> str | None:
    if row.get("evidence_signal") != Signal.ROBOTS_TXT or not row.get("evidence_file"):
        return None
    when = _when(row.get("evidence_fetched_at"))
    at = f" at {when}" if when else ""
    return (f"the robots.txt at {row['evidence_file']} could not be fetched{at}. RFC 9309 "
            "says a crawler must then assume the whole site is disallowed, so nothing from "
            f"it was requested. Evidence: {evidence.rstrip('.')}.")


def _aipref(row: Row, evidence: str) -> str | None:
    signal = row.get("evidence_signal")
    if signal == Signal.ROBOTS_TXT and _has_rule(row):
        return (f"{_whose(row, 'robots.txt')} {_file_words(row)} says "
                f"`{row['evidence_rule']}` on line {row['evidence_line']}: an IETF AI "
                "preference against AI training. The image itself was never requested.")
    if signal == Signal.HEADER and row.get("evidence_rule"):
        return (f"the image's response carried the header `{row['evidence_rule']}`: an IETF "
                "AI preference against AI training. Headers are read before the body, so no "
                "byte of the image was stored.")
    return None


def _tdm(row: Row, evidence: str) -> str | None:
    signal = row.get("evidence_signal")
    if signal == Signal.TDMREP_JSON and _has_rule(row):
        return (f"{_whose(row, 'TDMRep file')} {_file_words(row)} reserves "
                f"text-and-data-mining rights for this path (entry {row['evidence_line']}: "
                f"{row['evidence_rule']}). The image itself was never requested.")
    if signal == Signal.HEADER and row.get("evidence_rule"):
        return (f"the image's response carried `{row['evidence_rule']}` (W3C TDMRep): "
                "text-and-data-mining rights are reserved. Headers are read before the "
                "body, so no byte of the image was stored.")
    return None


def _xrt(row: Row, evidence: str) -> str | None:
    rule = row.get("evidence_rule")
    if row.get("evidence_signal") != Signal.HEADER or not rule:
        return None
    directive = _denying_directive(str(rule))
    which = f", whose directive `{directive}`" if directive else ", which"
    return (f"the image's response carried the header `{rule}`{which} asks not to use it "
            "for AI. Headers are read before the body, so no byte of the image was stored.")


def _denying_directive(header_line: str) -> str | None:
    """The AI (else search) directive of an ``X-Robots-Tag: ...`` line, read by the
    same parser that decided."""
    found = set().union(*parse_x_robots_tag([header_line.partition(":")[2]]).values())
    for kinds in (AI_DIRECTIVES, SEARCH_DIRECTIVES):
        hits = sorted(found & kinds)
        if hits:
            return hits[0]
    return None


def _registry(row: Row, evidence: str) -> str | None:
    if row.get("evidence_signal") != Signal.LIST:
        return None
    if str(row.get("evidence_rule") or "").startswith("sha256 "):
        return ("the image's content (its sha256) is on an opt-out list the dataset "
                f"builder gave this run: {evidence}. The image was downloaded to compute "
                "the hash and then discarded; nothing of it was written.")
    return (f"the URL is on an opt-out list the dataset builder gave this run: {evidence}. "
            "It was never requested.")


_Explainer = Callable[[Row, str], "str | None"]
_SPECIAL: dict[str, _Explainer] = {
    Reason.ROBOTS_DISALLOWED: _rule_file("robots.txt", Signal.ROBOTS_TXT),
    Reason.AITXT_DISALLOWED: _rule_file("ai.txt", Signal.AI_TXT),
    Reason.AI_CRAWLER_BLOCKED: _ai_crawler,
    Reason.ROBOTS_UNREACHABLE: _unreachable,
    Reason.AIPREF_DISALLOWED: _aipref,
    Reason.TDM_RESERVED: _tdm,
    Reason.X_ROBOTS_TAG: _xrt,
    Reason.REGISTRY_OPT_OUT: _registry,
}


def _when(value: Any) -> str | None:
    """A timestamp as ``2026-11-21 14:02 UTC``."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return f"{value:%Y-%m-%d %H:%M} UTC"
    if isinstance(value, str) and value:
        try:
            return _when(datetime.fromisoformat(value))
        except ValueError:
            return value
    return None


# ---------------------------------------------------------------- rows of a folder


def _explained(table: pa.Table, rechecked: Mapping[str, Row] | None = None,
               checked: bool = True) -> list[dict[str, Any]]:
    """Each row explained; a sample in ``rechecked`` (its latest recheck row, by key)
    also says what that recheck found. ``checked=False``: rows of a folder another
    tool wrote, which recorded no consent check."""
    out = []
    for row in table.to_pylist():
        item = {c: row.get(c) for c in ROW_COLUMNS}
        item.update(http_status=row.get("http_status"),
                    decided_at=_iso(row.get("decided_at")),
                    consent_profile=row.get("consent_profile"),
                    ignored_checks=row.get("ignored_checks"),
                    withdrawn_at=_iso(row.get("withdrawn_at")),
                    explanation=explain_row(row, checked=checked))
        again = (rechecked or {}).get(str(row.get("key")))
        if again is not None and row.get("status") == Status.SUCCESS:
            item["recheck"] = {"status": again.get("status"), "reason": again.get("reason"),
                               "evidence": again.get("evidence"),
                               "decided_at": _iso(again.get("decided_at"))}
            item["explanation"] += " " + recheck_sentence(
                again, _when(row.get("decided_at")), _when(again.get("decided_at")))
        out.append(item)
    return out


def _latest_rechecks(output_dir: str, table: pa.Table,
                     storage_options: dict[str, Any] | None) -> dict[str, Row]:
    """The latest recheck's rows of the downloaded samples of ``table``, by key."""
    if table.num_rows == 0:
        return {}
    out = open_output(output_dir, storage_options)
    stamps = recheck_stamps(out)
    if not stamps:
        return {}
    keys = {r["key"] for r in table.select(["key", "status"]).to_pylist()
            if r["status"] == Status.SUCCESS and r["key"] is not None}
    return dict(recheck_rows(out, stamps[-1], keys))


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def explain_url(output_dir: str, url: str, *,
                storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every audit row of ``url`` in ``output_dir``, each with an ``explanation``.

    Matches the exact string first; if no row has it, compares URLs with
    scheme and host lower-cased and default ports dropped
    (:func:`~consentfetch.audit.normalize_url`). Each dict holds ``key``,
    ``url``, ``status``, ``reason``, ``evidence``, ``http_status``,
    ``decided_at`` (ISO 8601), ``consent_profile``, ``ignored_checks`` and
    ``explanation``; a downloaded sample that a later ``consentfetch recheck``
    decided again also has ``recheck`` (that recheck's status, reason,
    evidence and time) and its explanation says what it found. An empty list
    means the URL is in no complete shard::

        >>> for row in explain_url("out/", "https://example.com/art/a.jpg"):
        ...     print(row["explanation"])
    """
    rows = find_url(read_audit(output_dir, storage_options=storage_options), url)
    return _explained(rows, _latest_rechecks(output_dir, rows, storage_options),
                      written_by(output_dir, storage_options) != IMG2DATASET)


def explain_host(output_dir: str, host: str, *,
                 storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Like :func:`explain_url`, for every audit row whose URL is on ``host``."""
    rows = read_audit(output_dir, host=host, storage_options=storage_options)
    return _explained(rows, _latest_rechecks(output_dir, rows, storage_options),
                      written_by(output_dir, storage_options) != IMG2DATASET)
