"""X-Robots-Tag: which directives a response addresses to which crawler.

The header is a comma list of directives; several header lines combine (pass
them all: ``headers.getall("X-Robots-Tag", [])``). Directive and crawler names
are case-insensitive. A ``botname:`` prefix scopes the directives that follow
it on the same line, until the next ``botname:`` on that line::

    X-Robots-Tag: noindex, googlebot: nofollow, mybot: noai
    → "*": noindex   googlebot: nofollow   mybot: noai

Some directives carry their own colon and are not crawler names:
``unavailable_after: <date>`` (the date may hold commas and colons),
``max-snippet:20``, ``max-image-preview:large``, ``max-video-preview:-1``.
A token before a colon is a crawler name only when it is none of these.

Reading choices:

* After ``unavailable_after:``, a following comma item that starts with a
  digit and is not itself ``botname: ...`` continues the date
  (``Sunday, 01 Jan 2030 00:00:00 GMT``): in every date format in use a comma
  inside a date is followed by a day or a year.
* A comma item of several words without a colon (``noindex nofollow``) is read
  as one directive per word: the most restrictive reading.
* A crawler name is compared on its product token: ``consentfetch/1.0: noai``
  addresses the token ``consentfetch``.
* Directives with a value are kept as ``name:value`` (``max-snippet:20``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "AI_DIRECTIVES",
    "SEARCH_DIRECTIVES",
    "XRobotsVerdict",
    "check_x_robots_tag",
    "parse_x_robots_tag",
]

AI_DIRECTIVES = frozenset({"noai", "noimageai", "noml"})
SEARCH_DIRECTIVES = frozenset({"noindex", "noimageindex", "none"})

# Directives written "name: value"; the name is never a crawler.
_VALUED_DIRECTIVES = frozenset(
    {"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"}
)
# Directives without a value: "noai:" with nothing after it is still "noai".
_PLAIN_DIRECTIVES = AI_DIRECTIVES | SEARCH_DIRECTIVES | frozenset(
    {
        "all", "nofollow", "noarchive", "nocache", "nosnippet", "notranslate",
        "indexifembedded", "noodp", "noydir",
    }
)
_BOT_NAME = re.compile(r"\*|[a-z0-9][a-z0-9_./-]*")
_UNSCOPED = "*"


@dataclass(frozen=True, slots=True)
class XRobotsVerdict:
    """Does X-Robots-Tag deny us, and by which directive on which header line."""

    denied: bool
    directive: str | None  # the directive that denies, lowercased, e.g. "noai"
    header: str | None  # the header line it came from, as received (evidence)


def parse_x_robots_tag(lines: Sequence[str]) -> dict[str, frozenset[str]]:
    """``{crawler or "*": directives}`` of all header lines, lower-cased."""
    found: dict[str, set[str]] = {}
    for line in _as_lines(lines):
        for bot, directive in _parse_line(line):
            found.setdefault(bot, set()).add(directive)
    return {bot: frozenset(directives) for bot, directives in found.items()}


def check_x_robots_tag(lines: Sequence[str], token: str, *, strict: bool) -> XRobotsVerdict:
    """Do these header lines deny ``token``?

    Directives for all crawlers or for ``token`` count: ``noai``,
    ``noimageai`` and ``noml`` always, ``noindex``, ``noimageindex`` and
    ``none`` when ``strict``. An AI directive is reported in preference to a
    search one; otherwise the first denying directive in header order.
    """
    ours = {_UNSCOPED, _product_token(token)}
    denying = [AI_DIRECTIVES, SEARCH_DIRECTIVES] if strict else [AI_DIRECTIVES]
    parsed = [(line, _parse_line(line)) for line in _as_lines(lines)]
    for kinds in denying:
        for line, pairs in parsed:
            for bot, directive in pairs:
                if directive in kinds and _product_token(bot) in ours:
                    return XRobotsVerdict(True, directive, line)
    return XRobotsVerdict(False, None, None)


def _as_lines(lines: Sequence[str]) -> Sequence[str]:
    # A lone str is a Sequence[str] of characters: treat it as one line.
    return [lines] if isinstance(lines, str) else lines


def _product_token(name: str) -> str:
    """``"*"`` or the crawler token of a name: ``ConsentFetch/1.0`` → ``consentfetch``."""
    name = name.strip().lower()
    return name if name == _UNSCOPED else name.partition("/")[0]


def _parse_line(line: str) -> list[tuple[str, str]]:
    """``(crawler or "*", directive)`` pairs of one header line, in order."""
    items = line.split(",")
    pairs: list[tuple[str, str]] = []
    bot = _UNSCOPED
    index = 0
    while index < len(items):
        item = items[index].strip()
        index += 1
        while item:  # peel "botname:" prefixes off the item
            name, colon, rest = item.partition(":")
            key = name.strip().lower()
            if not colon or (key in _PLAIN_DIRECTIVES and not rest.strip()):
                pairs.extend((bot, word) for word in key.split())
            elif key in _VALUED_DIRECTIVES:
                value = rest.strip()
                if key == "unavailable_after":
                    while index < len(items) and _continues_date(items[index]):
                        value += "," + items[index]
                        index += 1
                pairs.append((bot, f"{key}:{value.lower()}" if value else key))
            elif _BOT_NAME.fullmatch(key):
                bot, item = key, rest.strip()
                continue
            break  # anything else ("two words: x") is not a directive
    return pairs


def _continues_date(item: str) -> bool:
    """Is this comma item the rest of an ``unavailable_after`` date?"""
    item = item.strip()
    if not item[:1].isdigit():
        return False
    name, colon, _ = item.partition(":")
    return not (colon and _BOT_NAME.fullmatch(name.strip().lower()))
