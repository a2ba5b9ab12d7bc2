"""robots.txt, read as RFC 9309 says, with the evidence behind every answer.

A :class:`RobotsPolicy` is parsed once per origin and asked many times:
``check(url, token)`` says whether ``token`` may fetch ``url`` and, as
evidence, which rule decided it, on which line, and through which group.

The token is a parameter of every question, so the same parsed file answers
for our own token, for ``"*"`` (a crawler no group names) and for any other
crawler token (AI-crawler inference: "is this path blocked for GPTBot but
allowed for an unnamed crawler?"). ``names_token(token)`` says whether a
group names a token itself, and ``rules(token)`` gives the rule records of the
group(s) applying to it in file order, ``Content-Usage`` lines included (kept
as written, for the AI-preferences reader to interpret).

Why not protego
---------------
protego 0.7.0 is a good matcher, but nothing of it is used here:

* its group parsing has to be redone anyway: it matches groups by substring
  (``User-agent: gpt`` applies to ``GPTBot``), splits a group at an unknown
  record between two ``User-agent`` lines, lets a BOM hide the first line and
  takes only ``str``;
* its public answer is a bare ``bool``; the audit needs the rule and its line;
* its matcher lives in private modules (``protego._urlpattern``,
  ``protego._utils``) that may change in any release, and its percent-encoding
  normalisation differs from RFC 9309 §2.2.2 (it decodes ``%3D`` into ``=``),
  and it adds rules the site never wrote (``Allow: /index.html`` also allows
  ``/``, ``Disallow: /a$`` also disallows the literal path ``/a$``).

Re-using its private matcher under our own group parser would tie us to
internals and still not give RFC normalisation, so grouping, normalisation and
matching (some 200 lines) live here, and the tests cross-check the cases
where protego is right.

Reading of RFC 9309 (and the choices it leaves)
-----------------------------------------------
* Lines end at CR LF, LF or CR. ``#`` starts a comment. A record is
  ``key: value``; keys are case-insensitive. Like Google's reference parser
  (whose authors wrote the RFC) we also accept the well-known misspellings of
  ``disallow`` and ``user-agent``, and ``key value`` without a colon when the
  line has exactly two words: both honour what the site owner evidently meant.
  Any other line is not a record and changes nothing.
* A group starts with one or more ``User-agent`` lines; records that are not
  rules (Sitemap, Crawl-delay, Content-Signal, License, unknown keys) neither end a
  group nor split its ``User-agent`` lines. Rules are ``Allow``, ``Disallow``
  and ``Content-Usage``; a ``User-agent`` line after a rule starts a new group.
  Rules and Crawl-delay before the first ``User-agent`` line are ignored.
* Some other records are kept, as written, for sibling readers
  (:data:`KEPT_RECORDS`: ``Content-Signal``): inside a group they stay with
  it (:meth:`RobotsPolicy.records`, read from the group(s) selected for a
  token like the rules); before the first ``User-agent`` line they are kept
  apart (:attr:`RobotsPolicy.preamble`), for readers that give them a meaning
  of their own (the strict profile reads a ``Content-Signal`` there as
  addressed to every crawler). Keeping them changes no group boundary.
* A ``User-agent`` value names the product token made of its leading
  ``[A-Za-z_-]`` characters, compared case-insensitively (``ConsentFetch/1.0``
  names ``consentfetch``); ``*`` alone names every crawler. All groups naming
  the token are merged; if none does, all ``*`` groups are merged; a named
  group does not inherit from ``*``. A group with no rules allows everything.
* Matching is case-sensitive, from the first octet of path+query. Both sides
  are first brought to one spelling (:func:`_canonical`): escapes of
  unreserved characters are decoded (``%62%61%7A`` = ``baz``), escapes of
  reserved characters stay escaped (``%2F`` is not ``/``: RFC 9309 §2.2.2
  says reserved characters are not unencoded, and RFC 3986 §6.2.2.2 says they
  are not equivalent), non-ASCII and other characters a URI cannot carry are
  escaped, hex digits upper-cased. Following RFC 9309 §2.2.2's table, inside
  the query ``:``, ``/``, ``?`` and ``@`` compare escaped
  (``?u=https://a`` = ``?u=https%3A%2F%2Fa``); following §2.2.3, a literal
  ``*`` or ``$`` in the URI equals ``%2A`` / ``%24`` in a rule.
* ``*`` matches any run of characters; a ``$`` ending a pattern anchors it to
  the end of the URI, elsewhere it is a literal ``$``. A pattern matches from
  the first octet, so one starting with neither ``/`` nor ``*`` never matches.
* The longest matching pattern (octets, after normalisation) wins; an Allow
  and a Disallow of equal length give Allow; among equals the earlier line is
  reported. An empty ``Allow``/``Disallow`` value is no rule. ``/robots.txt``
  (whatever the query) is always allowed.
* Bytes are decoded as UTF-8 (errors replaced) after a leading BOM is
  dropped. Only the first :data:`MAX_ROBOTS_BYTES` bytes are parsed; when the
  file is longer, the line cut by that limit is dropped too, since half a
  rule (``Allow: /a`` from ``Allow: /archive/public``) may say more than the
  site did.
* Crawl-delay: a non-negative decimal number of seconds; anything else
  (``nan``, ``inf``, ``-1``, ``1e3``) is ignored. A number too large for a
  float is infinite. When merged groups give several, the largest (most
  polite) wins; :meth:`RobotsPolicy.crawl_delay_rule` names its line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

__all__ = [
    "KEPT_RECORDS",
    "MAX_ROBOTS_BYTES",
    "CrawlDelay",
    "LicenceLine",
    "PathPattern",
    "RobotsPolicy",
    "RobotsRule",
    "RobotsVerdict",
    "compile_path_pattern",
    "complete_lines",
    "match_target",
    "strip_bom",
]

T = TypeVar("T")

MAX_ROBOTS_BYTES = 512_000  # RFC 9309 §2.5: parse at least 500 KiB

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_PRODUCT_TOKEN = re.compile(r"[A-Za-z_-]*")
_CRAWL_DELAY = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_URL_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")

# Record keys, lower-cased, to the name we use. The misspellings are the ones
# Google's reference parser accepts.
_KEYS = {
    "user-agent": "user-agent",
    "useragent": "user-agent",
    "user agent": "user-agent",
    "allow": "allow",
    "disallow": "disallow",
    "dissallow": "disallow",
    "dissalow": "disallow",
    "disalow": "disallow",
    "diasllow": "disallow",
    "disallaw": "disallow",
    "content-usage": "content-usage",
    "crawl-delay": "crawl-delay",
    "content-signal": "content-signal",
}
_RULE_FIELDS = frozenset({"allow", "disallow", "content-usage"})
_PATH_FIELDS = frozenset({"allow", "disallow"})
#: Other records kept as written (they end no group): inside a group and before
#: the first one. Cloudflare Content Signals: ``Content-Signal: ai-train=no``.
KEPT_RECORDS = frozenset({"content-signal", "license"})

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# RFC 3986 reserved characters kept as written; "*" and "$" are handled apart.
_RESERVED_KEPT = frozenset(b":/?[]@!&'()+,;=")
# Inside the query these compare escaped (RFC 9309 §2.2.2, second table row).
_QUERY_ESCAPED = frozenset(b":/?@")
_HEX = frozenset(b"0123456789ABCDEFabcdef")
# Text that _canonical leaves as it is: unreserved and kept reserved characters,
# no "%", no "?" (a query escapes some), no "$"; "*" only in a pattern.
_PLAIN = re.compile(r"[A-Za-z0-9\-._~:/\[\]@!&'()+,;=]*")
_PLAIN_PATTERN = re.compile(r"[A-Za-z0-9\-._~:/\[\]@!&'()+,;=*]*")


@dataclass(frozen=True, slots=True)
class RobotsVerdict:
    """The answer to "may this token fetch this URL", with its evidence."""

    allowed: bool
    #: the matching rule as written, e.g. "Disallow: /art/"; None when no rule matched
    rule: str | None
    #: 1-based line number of that rule in the file
    line: int | None
    #: the User-agent value that selected the applied group, as written in the
    #: file (e.g. "ConsentFetch/1.0"), "*", or "" when no group applied
    group: str


@dataclass(frozen=True, slots=True)
class _Pattern:
    """A rule path, normalised: literal runs between ``*``, maybe anchored."""

    parts: tuple[str, ...]
    anchored: bool
    length: int  # octets of the normalised pattern: the rule's priority

    @classmethod
    def compile(cls, value: str) -> _Pattern:
        anchored = value.endswith("$")
        canonical = _canonical(value[:-1] if anchored else value, pattern=True)
        parts = canonical.split("*")
        if len(parts) > 2:  # a run of "*" matches what one does: drop the empty runs between
            parts = [parts[0], *(part for part in parts[1:-1] if part), parts[-1]]
        return cls(tuple(parts), anchored, len(canonical) + int(anchored))

    def matches(self, path: str) -> bool:
        """Does this pattern match ``path`` (normalised) from its first octet?"""
        first, *rest = self.parts
        if not rest:
            return path == first if self.anchored else path.startswith(first)
        if not path.startswith(first):
            return False
        pos = len(first)
        *middle, last = rest
        for part in middle:  # leftmost placement leaves the most room after
            found = path.find(part, pos)
            if found < 0:
                return False
            pos = found + len(part)
        if self.anchored:
            return path.endswith(last) and len(path) - len(last) >= pos
        return path.find(last, pos) >= 0


#: A compiled robots.txt path pattern, for sibling readers that match paths the
#: way robots.txt does (tdmrep.json locations, ``Content-Usage`` paths):
#: ``pattern.matches(match_target(url))``; ``pattern.length`` is its priority.
PathPattern = _Pattern


def compile_path_pattern(value: str) -> PathPattern:
    """``value`` (``*`` wildcards, a final ``$`` anchor) compiled as a rule path is."""
    return _Pattern.compile(value)


def match_target(url_or_path: str) -> str:
    """The normalised path+query of a URL (or path) that patterns are matched against."""
    return _canonical(_request_target(url_or_path), pattern=False)


@dataclass(frozen=True, slots=True)
class RobotsRule:
    """One rule line of a group: ``Allow``, ``Disallow`` or ``Content-Usage``; also
    a kept other record (:data:`KEPT_RECORDS`), which is no rule."""

    field: str  # "allow", "disallow", "content-usage", or a kept record's field
    value: str  # the value as written (comment and outer whitespace removed)
    text: str  # the whole record as written, e.g. "Disallow: /art/"
    line: int  # 1-based
    pattern: _Pattern | None  # for allow/disallow; None for the others


@dataclass(frozen=True, slots=True)
class LicenceLine:
    """An RSL ``License`` record: an other record, never a rule."""

    value: str  # as written (comment and outer whitespace removed)
    line: int  # 1-based
    #: the User-agent value of the group it stands in, or "" before the first group
    group: str


@dataclass(frozen=True, slots=True)
class CrawlDelay:
    """The ``Crawl-delay`` line that applies to a token, as evidence."""

    #: seconds between requests; ``inf`` for a number too large for a float
    seconds: float
    #: the record as written, e.g. "Crawl-delay: 10"
    text: str
    #: 1-based line number in the file
    line: int
    #: the User-agent value that selected the group it stands in
    group: str


@dataclass(frozen=True, slots=True)
class _Agent:
    token: str  # "*", a lower-cased product token, or "" (names no crawler)
    written: str  # the User-agent value as written


_Rank = tuple[int, bool, int]  # (pattern length, is Allow, -line): the highest decides


def _rank(rule: RobotsRule) -> _Rank:
    assert rule.pattern is not None
    return (rule.pattern.length, rule.field == "allow", -rule.line)


class _Matcher:
    """A group's Allow/Disallow rules, indexed so a path meets only the rules that
    can match it: the rules without ``*`` by their literal text, the others by
    the literal text before their first ``*``. The cost of a question grows with
    the path and the rules sharing its prefixes, not with the whole file."""

    __slots__ = ("_prefix", "_exact", "_wild")

    def __init__(self, rules: tuple[RobotsRule, ...]) -> None:
        # length -> text -> the best rule of that text (prefix rules, no "*")
        self._prefix: dict[int, dict[str, RobotsRule]] = {}
        self._exact: dict[str, RobotsRule] = {}  # anchored rules without "*"
        # length of the part before the first "*" -> that part -> its rules
        self._wild: dict[int, dict[str, list[RobotsRule]]] = {}
        for rule in rules:
            pattern = rule.pattern
            if pattern is None:
                continue
            head = pattern.parts[0]
            if len(pattern.parts) > 1:
                self._wild.setdefault(len(head), {}).setdefault(head, []).append(rule)
                continue
            table = self._exact if pattern.anchored else \
                self._prefix.setdefault(len(head), {})
            known = table.get(head)
            if known is None or _rank(rule) > _rank(known):
                table[head] = rule

    def best(self, path: str) -> RobotsRule | None:
        """The rule that decides ``path`` (normalised) in this group, if any matches."""
        found: list[RobotsRule] = []
        exact = self._exact.get(path)
        if exact is not None:
            found.append(exact)
        for length, table in self._prefix.items():
            if length <= len(path) and (rule := table.get(path[:length])) is not None:
                found.append(rule)
        for length, heads in self._wild.items():
            if length <= len(path):
                for rule in heads.get(path[:length], ()):
                    if rule.pattern is not None and rule.pattern.matches(path):
                        found.append(rule)
        return max(found, key=_rank, default=None)


@dataclass(frozen=True, slots=True)
class _Group:
    agents: tuple[_Agent, ...]
    rules: tuple[RobotsRule, ...]
    crawl_delays: tuple[tuple[float, str, int], ...]  # (seconds, record as written, line)
    matcher: _Matcher
    records: tuple[RobotsRule, ...] = ()  # kept other records (KEPT_RECORDS), file order

    def selector(self, token: str) -> str | None:
        """The User-agent value by which this group names ``token``, if any."""
        for agent in self.agents:
            if agent.token == token:
                return agent.written
        return None


@dataclass(frozen=True, slots=True)
class _Selection:
    """The groups that apply to one token, each with the value that selected it."""

    groups: tuple[tuple[str, _Group], ...]
    # What readers built from these groups' rules (see RobotsPolicy.derived)
    memo: dict[object, object] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.groups[0][0] if self.groups else ""


class RobotsPolicy:
    """A parsed robots.txt: which paths each crawler token may fetch."""

    __slots__ = ("_groups", "_selections", "_named", "approx_bytes", "_last", "preamble",
                 "_preamble_memo")

    def __init__(self, groups: tuple[_Group, ...] = (),
                 preamble: tuple[RobotsRule, ...] = ()) -> None:
        self._groups = groups
        #: kept other records (:data:`KEPT_RECORDS`) before the first User-agent line
        self.preamble = preamble
        self._preamble_memo: dict[object, object] = {}
        self._selections: dict[str, _Selection] = {}
        # Every token some group names: AI-crawler inference asks about dozens
        # of tokens for every URL, so this is looked up, not recomputed.
        self._named = frozenset(a.token for g in groups for a in g.agents if a.token)
        #: the memory this parsed file holds, estimated (for caches with a budget)
        self.approx_bytes = _approx_bytes(groups) + sum(450 + 3 * len(r.text) for r in preamble)
        # The last path asked about, and each group's deciding rule for it: one
        # URL is asked about for our token, "*" and the AI-crawler tokens in turn.
        self._last: tuple[str, dict[int, RobotsRule | None]] = ("", {})

    @classmethod
    def parse(cls, body: bytes | str) -> RobotsPolicy:
        """Parse a robots.txt body (bytes as received, or text)."""
        return cls(*_parse_groups(_decode(body)))

    @classmethod
    def allow_all(cls) -> RobotsPolicy:
        """The policy of an origin without robots.txt (4xx): no restrictions."""
        return cls()

    def check(self, url_or_path: str, token: str) -> RobotsVerdict:
        """May ``token`` fetch ``url_or_path`` (a full URL or a path+query)?"""
        return self.check_tokens(url_or_path, (token,))[0]

    def check_tokens(self, url_or_path: str, tokens: Sequence[str]) -> list[RobotsVerdict]:
        """:meth:`check` for each of ``tokens``; every group is matched once at most."""
        path = _canonical(_request_target(url_or_path), pattern=False)
        robots_txt = path.partition("?")[0] == "/robots.txt"
        last_path, decided = self._last  # id(group) -> its deciding rule for last_path
        if last_path != path:
            decided = {}
            self._last = (path, decided)
        verdicts = []
        for token in tokens:
            selection = self._select(token)
            evidence: tuple[str, RobotsRule] | None = None
            for label, group in () if robots_txt else selection.groups:
                if id(group) not in decided:
                    decided[id(group)] = group.matcher.best(path)
                rule = decided[id(group)]
                if rule is not None and (evidence is None or _rank(rule) > _rank(evidence[1])):
                    evidence = (label, rule)
            if evidence is None:
                verdicts.append(RobotsVerdict(True, None, None, selection.label))
            else:
                label, rule = evidence
                verdicts.append(RobotsVerdict(rule.field == "allow", rule.text, rule.line,
                                              label))
        return verdicts

    def crawl_delay(self, token: str) -> float | None:
        """Seconds to wait between requests, from the group applying to ``token``."""
        found = self.crawl_delay_rule(token)
        return found.seconds if found is not None else None

    def crawl_delay_rule(self, token: str) -> CrawlDelay | None:
        """The largest ``Crawl-delay`` of the group(s) applying to ``token``, with its
        line (the first of equals); None when they have none."""
        best: CrawlDelay | None = None
        for label, group in self._select(token).groups:
            for seconds, text, line in group.crawl_delays:
                if best is None or seconds > best.seconds:
                    best = CrawlDelay(seconds, text, line, label)
        return best

    def licences(self, token: str, *, strict: bool) -> tuple[LicenceLine, ...]:
        """The RSL ``License`` lines that apply to ``token``: those of its group(s) if they
        have any, else those before the first group; ``strict``: both. Other agents'
        groups' lines never apply."""
        grouped = tuple(LicenceLine(record.value, record.line, label)
                        for label, group in self._select(token).groups
                        for record in group.records
                        if record.field == "license" and record.value)
        preamble = tuple(LicenceLine(record.value, record.line, "") for record in self.preamble
                         if record.field == "license" and record.value)
        if strict:
            return preamble + grouped
        return grouped or preamble

    @property
    def named_tokens(self) -> frozenset[str]:
        """Every product token some group names (lower-cased)."""
        return self._named

    def names_token(self, token: str) -> bool:
        """Does any group name ``token`` itself (exactly, case-insensitively)?"""
        wanted = _product_token(token)
        return bool(wanted) and wanted in self._named

    def rules(self, token: str) -> tuple[RobotsRule, ...]:
        """The rules of the group(s) applying to ``token``, in file order."""
        return self.derived(token, _all_rules)

    def records(self, token: str) -> tuple[RobotsRule, ...]:
        """The kept other records (:data:`KEPT_RECORDS`) of the group(s) applying to
        ``token``, in file order; a named group does not inherit ``*``'s."""
        return self.derived_records(token, _all_rules)

    def derived_records(self, token: str, build: Callable[[tuple[RobotsRule, ...]], T]) -> T:
        """``build(records(token))``, built once per group selection (see :meth:`derived`)."""
        selection = self._select(token)
        key = ("records", build)
        if key not in selection.memo:
            records = tuple(record for _, group in selection.groups for record in group.records)
            selection.memo[key] = records if build is _all_rules else build(records)
        return cast(T, selection.memo[key])

    def derived_preamble(self, build: Callable[[tuple[RobotsRule, ...]], T]) -> T:
        """``build(preamble)``, built once per file."""
        if build not in self._preamble_memo:
            self._preamble_memo[build] = build(self.preamble)
        return cast(T, self._preamble_memo[build])

    def selected_by(self, token: str) -> str:
        """The User-agent value (as written) selecting the group applying to ``token``:
        the first of merged groups; "" when no group applies."""
        return self._select(token).label

    def derived(self, token: str, build: Callable[[tuple[RobotsRule, ...]], T]) -> T:
        """``build(rules(token))``, built once per group selection and kept with it.

        For sibling readers that interpret rules of their own (``Content-Usage``):
        they prepare them once per file instead of once per URL.
        """
        selection = self._select(token)
        if build not in selection.memo:
            rules = tuple(rule for _, group in selection.groups for rule in group.rules)
            selection.memo[build] = rules if build is _all_rules else build(rules)
        return cast(T, selection.memo[build])

    def _select(self, token: str) -> _Selection:
        wanted = _product_token(token)
        cached = self._selections.get(wanted)
        if cached is not None:
            return cached
        named: list[tuple[str, _Group]] = []
        if wanted and wanted != "*":
            named = [(s, g) for g in self._groups if (s := g.selector(wanted)) is not None]
        if not named:
            named = [(s, g) for g in self._groups if (s := g.selector("*")) is not None]
        selection = _Selection(tuple(named))
        self._selections[wanted] = selection
        return selection


def complete_lines(raw: bytes) -> bytes:
    """``raw`` up to the end of its last complete line: what a cut body lets us read.

    A line cut in two by a byte limit may say something the site never wrote
    (``Disallow: /private/`` cut after ``Disallow: /``), so it is dropped.
    """
    return raw[: max(raw.rfind(b"\n"), raw.rfind(b"\r")) + 1]


_BOM = b"\xef\xbb\xbf"


def strip_bom(raw: bytes) -> bytes:
    """``raw`` without a leading UTF-8 byte-order mark, or a leading fragment of one.

    A damaged BOM (``EF BB`` without ``BF``) would otherwise turn the first
    line into an unknown record: ``User-agent: *`` would vanish, and with it
    the group's ``Disallow: /``. A fragment is stripped only where it cannot
    be the start of a real character (the next byte is no continuation byte).
    """
    for size in (3, 2, 1):
        if raw[:size] == _BOM[:size]:
            continues = size < 3 and len(raw) > size and 0x80 <= raw[size] <= 0xBF
            return raw if continues else raw[size:]
    return raw


def _all_rules(rules: tuple[RobotsRule, ...]) -> tuple[RobotsRule, ...]:
    return rules


def _approx_bytes(groups: tuple[_Group, ...]) -> int:
    """Roughly what ``groups`` hold in memory: each rule keeps its text about three
    times over (value, record, pattern) plus a few hundred bytes of objects."""
    total = 512
    for group in groups:
        total += 256 + 300 * len(group.agents)
        total += sum(200 + len(text) for _, text, _ in group.crawl_delays)
        total += sum(len(agent.written) for agent in group.agents)
        for rule in group.rules + group.records:
            parts = len(rule.pattern.parts) if rule.pattern is not None else 0
            total += 450 + 3 * len(rule.text) + 8 * parts
    return total


def _decode(body: bytes | str) -> str:
    """The text RFC 9309 asks us to parse: UTF-8, no BOM, at most 500 KiB."""
    raw = body.encode("utf-8", "replace") if isinstance(body, str) else bytes(body)
    if len(raw) > MAX_ROBOTS_BYTES:
        raw = complete_lines(raw[:MAX_ROBOTS_BYTES])
    return strip_bom(raw).decode("utf-8", "replace")


def _product_token(value: str) -> str:
    """``"*"``, the lower-cased product token a value names, or ``""``."""
    value = value.strip()
    if value == "*" or (value.startswith("*") and value[1].isspace()):
        return "*"
    token = _PRODUCT_TOKEN.match(value)
    return token.group().lower() if token else ""


def _split_record(line: str) -> tuple[str, str] | None:
    """``(key, value)`` of a comment-free, stripped line, or None."""
    key, colon, value = line.partition(":")
    if colon:
        return _KEYS.get(key.strip().lower(), key.strip().lower()), value.strip()
    words = line.split()
    if len(words) == 2 and words[0].lower() in _KEYS:
        return _KEYS[words[0].lower()], words[1]
    return None


def _parse_delay(value: str) -> float | None:
    """Seconds, or None for a value that is not a non-negative decimal number.

    Only digits and one dot pass, so ``nan`` and ``inf`` are ignored as written;
    a number too large for a float (``1`` and 400 zeros) is ``inf``: longer
    than any wait we accept.
    """
    return float(value) if _CRAWL_DELAY.fullmatch(value) else None


class _GroupBuilder:
    __slots__ = ("agents", "rules", "delays", "records")

    def __init__(self) -> None:
        self.agents: list[_Agent] = []
        self.rules: list[RobotsRule] = []
        self.delays: list[tuple[float, str, int]] = []
        self.records: list[RobotsRule] = []

    def build(self) -> _Group:
        rules = tuple(self.rules)
        return _Group(tuple(self.agents), rules, tuple(self.delays), _Matcher(rules),
                      tuple(self.records))


def _parse_groups(text: str) -> tuple[tuple[_Group, ...], tuple[RobotsRule, ...]]:
    """The groups of a file, and the kept records before its first group."""
    builders: list[_GroupBuilder] = []
    preamble: list[RobotsRule] = []
    current: _GroupBuilder | None = None
    rule_seen = False  # a rule since the last User-agent line: the next one starts a group
    for number, raw_line in enumerate(_LINE_BREAK.split(text), start=1):
        line = raw_line.partition("#")[0].strip()
        record = _split_record(line) if line else None
        if record is None:
            continue
        field, value = record
        if field == "user-agent":
            if current is None or rule_seen:
                current, rule_seen = _GroupBuilder(), False
                builders.append(current)
            current.agents.append(_Agent(_product_token(value), value))
        elif field in KEPT_RECORDS:  # an other record: it ends no group
            kept = RobotsRule(field, value, line, number, None)
            (preamble if current is None else current.records).append(kept)
        elif current is None:
            continue  # before the first User-agent line
        elif field in _RULE_FIELDS:
            rule_seen = True
            if value:
                pattern = _Pattern.compile(value) if field in _PATH_FIELDS else None
                current.rules.append(RobotsRule(field, value, line, number, pattern))
        elif field == "crawl-delay" and (delay := _parse_delay(value)) is not None:
            if not current.delays or delay > current.delays[0][0]:
                current.delays[:] = [(delay, line, number)]  # only the largest matters
    return tuple(builder.build() for builder in builders), tuple(preamble)


def _request_target(url_or_path: str) -> str:
    """The path+query of a URL (or of a path), starting with ``/``."""
    target = url_or_path.strip().partition("#")[0]
    if not target.startswith("/"):
        authority = _URL_AUTHORITY.match(target)
        if authority:
            target = target[authority.end() :]
    return target if target.startswith("/") else "/" + target


def _canonical(text: str, *, pattern: bool) -> str:
    """One spelling for equivalent paths (see the module docstring).

    In a pattern (``pattern=True``, the anchoring ``$`` already removed) a
    ``*`` stays the wildcard; in a URI it is the literal ``%2A``.
    """
    if (_PLAIN_PATTERN if pattern else _PLAIN).fullmatch(text):
        return text  # nothing to decode or escape: most paths and rules
    return _respelled(text, pattern=pattern)


def _respelled(text: str, *, pattern: bool) -> str:
    """:func:`_canonical`, character by character."""
    data = text.encode("utf-8", "replace")
    out: list[str] = []
    in_query = False
    i = 0
    while i < len(data):
        byte = data[i]
        i += 1
        if byte == 0x25 and _is_hex2(data[i : i + 2]):
            code = int(data[i : i + 2], 16)
            i += 2
            out.append(chr(code) if code in _UNRESERVED else f"%{code:02X}")
        elif byte == 0x2A:  # "*"
            out.append("*" if pattern else "%2A")
        elif byte == 0x3F and not in_query:  # the first "?" starts the query
            in_query = True
            out.append("?")
        elif byte in _UNRESERVED or (
            byte in _RESERVED_KEPT and not (in_query and byte in _QUERY_ESCAPED)
        ):
            out.append(chr(byte))
        else:  # "%" without two hex digits, "$", non-ASCII, space, controls...
            out.append(f"%{byte:02X}")
    return "".join(out)


def _is_hex2(pair: bytes) -> bool:
    return len(pair) == 2 and pair[0] in _HEX and pair[1] in _HEX
