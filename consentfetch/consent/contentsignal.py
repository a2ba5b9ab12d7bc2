"""Cloudflare Content Signals: ``Content-Signal:`` lines in robots.txt, read.

Cloudflare's Content Signals Policy puts a line such as
``Content-Signal: search=yes, ai-train=no`` inside a robots.txt group (its
managed robots.txt does so for millions of domains). ``ai-train`` is about
"training or fine-tuning AI models": the key that concerns a training
dataset. ``use`` (2026) gives the maximum level of use, least to most
permissive: ``immediate`` (not retained), ``reference`` (retained, indexed or
cited), ``full`` (unrestricted, AI training included). A dataset keeps content
for AI training, so it needs ``full``.

:mod:`.robots` keeps the lines as written (they are no rules and end no
group): those of the group(s) selected for our token, and those before the
first ``User-agent`` line. This module gives them their meaning; it is pure.

Reading choices (CONSENT.md, ARCHITECTURE.md §6):

* A value is ``key=value`` items split on commas; whitespace around items,
  keys and values is trimmed; keys and values compare case-insensitively.
  Keys other than ``search``, ``ai-input``, ``ai-train`` and ``use`` are
  ignored, and so are values other than ``yes``/``no`` (``use``:
  ``immediate``/``reference``/``full``) and items without ``=``.
* A key given twice (in one line, or in several lines of the selected
  groups): the most restrictive value wins (``no`` over ``yes``; the lowest
  ``use`` level), as it does across signals ("any refusal wins").
* ``ai-train=no`` denies in every profile. Strict (and opt-in, which reads
  strictly) also denies on ``use=immediate`` or ``use=reference``, and reads
  a line before the first ``User-agent`` line as addressed to every crawler.
* ``ai-train=yes`` in the selected group is an explicit permission (for
  ``--consent opt-in``), unless a line denies; a line before the first group
  grants nothing, since no standard says whom it addresses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .robots import RobotsRule

__all__ = [
    "AI_TRAIN",
    "NO_SIGNAL",
    "USE",
    "ContentSignal",
    "SignalVerdict",
    "check_content_signals",
    "parse_content_signal",
    "read_content_signals",
]

FIELD = "content-signal"
AI_TRAIN = "ai-train"
USE = "use"
_YES_NO_KEYS = ("search", "ai-input", AI_TRAIN)
_YES_NO_RANK = {"no": 0, "yes": 1}  # lower = more restrictive
_USE_RANK = {"immediate": 0, "reference": 1, "full": 2}
#: ``use`` levels below what a training dataset needs (strict denies on them)
_USE_TOO_LOW = frozenset({"immediate", "reference"})


@dataclass(frozen=True, slots=True)
class ContentSignal:
    """One ``Content-Signal`` line: its known keys (lower-cased) and the line."""

    values: Mapping[str, str]  # read-only by type; a dict, so a parsed file pickles
    record: RobotsRule


@dataclass(frozen=True, slots=True)
class SignalVerdict:
    """What the Content-Signal lines say about AI training, and which line said it."""

    denied: bool
    allowed: bool  # ai-train=yes in the selected group; never with denied
    #: the deciding item, as read (lower-cased), e.g. "ai-train=no"
    item: str | None = None
    #: the line that decided
    record: RobotsRule | None = None
    #: False when that line stands before the first User-agent line
    in_group: bool = True


NO_SIGNAL = SignalVerdict(False, False)


def parse_content_signal(value: str) -> dict[str, str]:
    """The known keys of one ``Content-Signal`` value, most restrictive per key."""
    found: dict[str, str] = {}
    for item in value.split(","):
        key, equals, raw = item.partition("=")
        key, val = key.strip().lower(), raw.strip().lower()
        ranks = _USE_RANK if key == USE else _YES_NO_RANK if key in _YES_NO_KEYS else None
        if not equals or ranks is None or val not in ranks:
            continue
        if key not in found or ranks[val] < ranks[found[key]]:
            found[key] = val
    return found


def read_content_signals(records: Sequence[RobotsRule]) -> tuple[ContentSignal, ...]:
    """The ``Content-Signal`` lines among kept robots.txt records that say something.

    Built once per group selection: ``policy.derived_records(token, read_content_signals)``.
    """
    signals = []
    for record in records:
        if record.field == FIELD and (values := parse_content_signal(record.value)):
            signals.append(ContentSignal(values, record))
    return tuple(signals)


def _denial(signal: ContentSignal, strict: bool) -> str | None:
    if signal.values.get(AI_TRAIN) == "no":
        return f"{AI_TRAIN}=no"
    use = signal.values.get(USE)
    if strict and use in _USE_TOO_LOW:
        return f"{USE}={use}"
    return None


def check_content_signals(group: Sequence[ContentSignal],
                          preamble: Sequence[ContentSignal] = (), *,
                          strict: bool) -> SignalVerdict:
    """The verdict of the selected group's lines (and, when strict, the lines
    before the first group): a denial names its line; else a permission."""
    for signals, in_group in ((group, True), (preamble if strict else (), False)):
        for signal in signals:
            item = _denial(signal, strict)
            if item is not None:
                return SignalVerdict(True, False, item, signal.record, in_group)
    for signal in group:
        if signal.values.get(AI_TRAIN) == "yes":
            return SignalVerdict(False, True, f"{AI_TRAIN}=yes", signal.record)
    return NO_SIGNAL
