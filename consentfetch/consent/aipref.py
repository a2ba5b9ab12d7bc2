"""IETF AI Preferences: ``Content-Usage`` in a response header or in robots.txt.

A preference is an RFC 9651 structured-field dictionary of usage labels
(draft-ietf-aipref-vocab): ``train-ai=n`` says "do not train AI on this",
``train-ai=y`` permits it, and ``search=n`` is about search alone, so it is
no signal for us. Earlier drafts used the labels ``train-genai``, ``ai`` and
``genai``; the strict reading treats them as ``train-ai``.

It reaches us two ways (draft-ietf-aipref-attach):

* the header, ``Content-Usage: train-ai=n`` (pass every line:
  ``headers.getall("Content-Usage", [])``);
* a robots.txt rule of the group applying to us,
  ``Content-Usage: [path] prefs``, kept by :mod:`.robots` as written.

Reading choices (the specs leave room, or are still drafts):

* Only a bare token ``y`` or ``n`` is a value. ``train-ai="n"``,
  ``train-ai=?0``, ``train-ai=1``, ``train-ai=(n)``, a bare ``train-ai``
  (Boolean true) and ``train-ai=N`` (tokens are case-sensitive) are unknown
  and ignored. Parameters on a member (``train-ai=n;x=1``) are ignored.
* Duplicate keys: the last wins, as RFC 9651 parsing says.
* The field is parsed whole or not at all: a parse failure anywhere (a
  trailing comma, ``train-ai=n;``, an upper-case key, a non-ASCII byte)
  leaves no preference at all. Several header lines are first combined with
  ``", "`` (RFC 9110 §5.3, RFC 9651 §4.2), so one broken line voids the
  field. Lines that are empty after trimming carry no value and are left out
  of the combination (otherwise a stray empty line would void a real
  ``train-ai=n``).
* ``strict``: ``train-ai`` and the legacy labels are read together and any
  ``n`` among them wins (most restrictive); without ``n``, any ``y`` is a
  permission. Not ``strict``: ``train-ai`` alone counts.
* robots.txt: a value starting with ``/`` or ``*`` starts with a path, the
  first whitespace-separated word; the rest is the dictionary. Without a path
  the rule covers the whole group and ranks below every path. Paths match as
  Allow/Disallow paths do (:mod:`.robots`: ``*``, ``$``, percent
  normalisation, from the first octet of path+query). Among the matching
  rules the one with the longest path wins *as a whole* (like Allow and
  Disallow, labels are not merged across rules); on a tie the later line wins,
  as a later duplicate key does in a dictionary. A rule whose dictionary does
  not parse, or holds no ``label=y|n`` member (``/art/ train-ai="n"``, or a
  path alone), expresses nothing and takes no part: it cannot shadow a
  shorter rule that does say something. A winning rule without ``train-ai``
  (``/art/ search=y``) leaves ``train-ai`` unset for its paths.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import http_sf

from .robots import PathPattern, RobotsRule, compile_path_pattern, match_target

__all__ = [
    "LEGACY_LABELS",
    "NO_SIGNAL",
    "TRAIN_AI",
    "UsageRule",
    "UsageVerdict",
    "check_content_usage_header",
    "check_robots_content_usage",
    "check_usage_rules",
    "compile_usage_rules",
    "parse_content_usage",
    "usage_decision",
]

TRAIN_AI = "train-ai"
#: Labels of earlier vocabulary drafts, read as ``train-ai`` when strict.
LEGACY_LABELS = ("train-genai", "ai", "genai")
_VALUES = frozenset({"y", "n"})
_PATH_START = ("/", "*")


@dataclass(frozen=True, slots=True)
class UsageVerdict:
    """What a Content-Usage preference says about AI training, and where it said it."""

    denied: bool  # train-ai (or a legacy label when strict) = n
    allowed: bool  # an explicit train-ai = y (a permission); never both
    label: str | None  # the deciding label as written, e.g. "train-genai"
    evidence: str | None  # 'Content-Usage: train-ai=n' or 'robots.txt line 7: ...'
    #: the robots.txt rule that decided, when robots.txt did (data for the audit)
    rule: RobotsRule | None = field(default=None, compare=False)


NO_SIGNAL = UsageVerdict(False, False, None, None)


def parse_content_usage(field_value: str) -> dict[str, str] | None:
    """``{label: "y" | "n"}`` of a field value; None when it does not parse.

    Members whose value is not the bare token ``y`` or ``n`` are dropped.
    """
    try:
        data = field_value.strip(" \t").encode("ascii")
        parsed = http_sf.parse(data, tltype="dictionary")
    except (UnicodeEncodeError, http_sf.StructuredFieldError):
        return None
    if not isinstance(parsed, dict):  # pragma: no cover - tltype="dictionary"
        return None
    prefs: dict[str, str] = {}
    for label, member in parsed.items():
        value = member[0] if isinstance(member, tuple) else member
        if isinstance(value, http_sf.Token) and str(value) in _VALUES:
            prefs[label] = str(value)
    return prefs


def usage_decision(prefs: Mapping[str, str], *, strict: bool) -> tuple[bool | None, str | None]:
    """``(True, label)`` allowed, ``(False, label)`` denied, ``(None, None)`` unset."""
    labels = (TRAIN_AI, *LEGACY_LABELS) if strict else (TRAIN_AI,)
    for wanted, verdict in (("n", False), ("y", True)):
        for label in labels:
            if prefs.get(label) == wanted:
                return verdict, label
    return None, None


def check_content_usage_header(lines: Sequence[str], *, strict: bool) -> UsageVerdict:
    """The verdict of all ``Content-Usage`` header lines of one response."""
    present = [line.strip(" \t") for line in _as_lines(lines)]
    combined = ", ".join(line for line in present if line)
    if not combined:
        return NO_SIGNAL
    prefs = parse_content_usage(combined)
    if prefs is None:
        return NO_SIGNAL
    return _verdict(prefs, strict, f"Content-Usage: {combined}")


def check_robots_content_usage(
    rules: Sequence[RobotsRule], url_or_path: str, *, strict: bool
) -> UsageVerdict:
    """The verdict of robots.txt ``Content-Usage`` rules (``policy.rules(token)``) on a URL."""
    return check_usage_rules(compile_usage_rules(tuple(rules)), url_or_path, strict=strict)


#: A robots.txt ``Content-Usage`` rule, read: (path pattern or None, prefs, the rule).
UsageRule = tuple[PathPattern | None, Mapping[str, str], RobotsRule]


def compile_usage_rules(rules: tuple[RobotsRule, ...]) -> tuple[UsageRule, ...]:
    """The ``Content-Usage`` rules among ``rules`` that say something, read once
    (``policy.derived(token, compile_usage_rules)`` keeps them with the file)."""
    compiled = []
    for rule in rules:
        if rule.field == "content-usage" and (parsed := _parse_rule(rule.value)) is not None:
            compiled.append((parsed[0], parsed[1], rule))
    return tuple(compiled)


def check_usage_rules(rules: Sequence[UsageRule], url_or_path: str, *,
                      strict: bool) -> UsageVerdict:
    """:func:`check_robots_content_usage` with rules read by :func:`compile_usage_rules`."""
    target = match_target(url_or_path)
    best: tuple[int, Mapping[str, str], RobotsRule] | None = None
    for pattern, prefs, rule in rules:
        if pattern is not None and not pattern.matches(target):
            continue
        rank = -1 if pattern is None else pattern.length
        if best is None or rank >= best[0]:  # ">=": the later line wins a tie
            best = (rank, prefs, rule)
    if best is None:
        return NO_SIGNAL
    _, prefs, rule = best
    return _verdict(prefs, strict, f"robots.txt line {rule.line}: {rule.text}", rule)


def _parse_rule(value: str) -> tuple[PathPattern | None, Mapping[str, str]] | None:
    """``(path pattern or None, prefs)`` of a rule value; None when it says nothing."""
    pattern: PathPattern | None = None
    text = value.strip()
    if text.startswith(_PATH_START):
        path, *rest = text.split(None, 1)
        pattern, text = compile_path_pattern(path), "".join(rest)
    prefs = parse_content_usage(text)
    return (pattern, MappingProxyType(prefs)) if prefs else None


def _verdict(prefs: Mapping[str, str], strict: bool, evidence: str,
             rule: RobotsRule | None = None) -> UsageVerdict:
    decided, label = usage_decision(prefs, strict=strict)
    if decided is None:
        return NO_SIGNAL
    return UsageVerdict(not decided, decided, label, evidence, rule)


def _as_lines(lines: Sequence[str]) -> Sequence[str]:
    # A lone str is a Sequence[str] of characters: treat it as one line.
    return [lines] if isinstance(lines, str) else lines
