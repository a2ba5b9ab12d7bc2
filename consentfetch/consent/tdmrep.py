"""W3C TDMRep (TDM Reservation Protocol): the EU DSM Art. 4 opt-out, read.

Two places say it:

* the response headers ``tdm-reservation: 1`` (rights reserved) or ``0``
  (not reserved), with an optional ``tdm-policy: <url>`` (evidence only);
* ``/.well-known/tdmrep.json``, a JSON array of
  ``{"location": pattern, "tdm-reservation": 0 | 1, "tdm-policy"?: url}``
  whose FIRST entry matching the URL's path (+query) decides.

Reading choices (the specs leave room):

* Header: each line (and each comma-separated element of a line, in case an
  intermediary joined repeated lines) is trimmed; ``1`` and ``0`` are
  values, anything else (``true``, ``2``, ``01``, empty) is unset. When the
  values disagree the most restrictive wins: any ``1`` reserves. The first
  non-empty ``tdm-policy`` line is recorded, only along with a set value.
* File: decoded as UTF-8 (a leading BOM is accepted); not UTF-8, not JSON,
  not an array, or longer than :data:`MAX_TDMREP_BYTES` → None ("not
  implemented"). An array with nothing usable is a valid file that reserves
  nothing. Only the first :data:`MAX_TDMREP_ENTRIES` array elements are
  read, so a hostile file costs bounded time per URL.
* An element that is not an object, or whose ``location`` is missing, empty
  or not a string, is no entry and is skipped. A location that starts with
  neither ``/`` nor ``*`` (``images/*``) is read from the root
  (``/images/*``): the only base it can have. Locations match as robots.txt
  paths do (:mod:`.robots`): case-sensitive, ``*`` any run, a final ``$``
  anchors, percent-encoding normalised, from the first octet of path+query.
* ``tdm-reservation`` must be the JSON integer ``0`` or ``1`` (``true``,
  ``"1"`` and ``1.0`` are not). An entry that matches but has any other
  value is unset for that entry, and matching continues past it, since it
  could have meant a reservation: a later matching ``1`` still reserves. It
  could also have meant one, so a later matching ``0`` is not taken as
  permission: the verdict is then unset. Either way the answer is at least
  as restrictive as stopping at that entry, or as skipping it.
* ``tdm-policy`` is kept when it is a string.
* :func:`combine`: the header, when set, supersedes the file (TDMRep, and our
  ``standard`` profile); an unset header leaves the file's verdict standing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .robots import PathPattern, compile_path_pattern, match_target, strip_bom

__all__ = [
    "MAX_TDMREP_BYTES",
    "MAX_TDMREP_ENTRIES",
    "TdmEntry",
    "TdmRepFile",
    "TdmVerdict",
    "UNSET",
    "check_tdm_headers",
    "combine",
]

MAX_TDMREP_BYTES = 512 * 1024
MAX_TDMREP_ENTRIES = 10_000
_MAX_EVIDENCE = 500  # characters of a location or policy quoted in evidence
_VALUES = {"0": 0, "1": 1}


@dataclass(frozen=True, slots=True)
class TdmVerdict:
    """A TDMRep reservation, its policy, and where it was said."""

    reservation: int | None  # 1 reserved, 0 not reserved, None unset
    policy: str | None  # the tdm-policy URL, if given
    evidence: str | None  # 'tdm-reservation: 1, tdm-policy: URL' or 'tdmrep.json entry 3 {...}'
    #: the tdmrep.json entry that decided, when a file did (data for the audit)
    entry: TdmEntry | None = field(default=None, compare=False)


UNSET = TdmVerdict(None, None, None)


def check_tdm_headers(reservation_lines: Sequence[str], policy_lines: Sequence[str]) -> TdmVerdict:
    """The verdict of a response's ``tdm-reservation`` and ``tdm-policy`` lines."""
    values = {
        _VALUES.get(element.strip(" \t"))
        for line in _as_lines(reservation_lines)
        for element in line.split(",")
    }
    reservation = 1 if 1 in values else 0 if 0 in values else None
    if reservation is None:
        return UNSET
    policy = next((p for line in _as_lines(policy_lines) if (p := line.strip(" \t"))), None)
    evidence = f"tdm-reservation: {reservation}"
    if policy is not None:
        evidence += f", tdm-policy: {_clip(policy)}"
    return TdmVerdict(reservation, policy, evidence)


def combine(header: TdmVerdict, file: TdmVerdict) -> TdmVerdict:
    """The header's verdict when it is set, else the file's."""
    return header if header.reservation is not None else file


@dataclass(frozen=True, slots=True)
class TdmEntry:
    """One usable entry of tdmrep.json."""

    number: int  # 1-based position in the array (evidence)
    location: str  # as written
    pattern: PathPattern
    reservation: int | None  # None: an invalid tdm-reservation value
    policy: str | None

    @property
    def written(self) -> str:
        """The entry as JSON: ``{"location": "/img/*", "tdm-reservation": 1}``."""
        shown: dict[str, Any] = {"location": _clip(self.location),
                                 "tdm-reservation": self.reservation}
        if self.policy is not None:
            shown["tdm-policy"] = _clip(self.policy)
        return json.dumps(shown, ensure_ascii=False)

    @property
    def evidence(self) -> str:
        """``tdmrep.json entry 3 {"location": "/img/*", "tdm-reservation": 1}``."""
        return f"tdmrep.json entry {self.number} {self.written}"


class TdmRepFile:
    """A parsed ``/.well-known/tdmrep.json``."""

    __slots__ = ("entries",)

    def __init__(self, entries: tuple[TdmEntry, ...] = ()) -> None:
        self.entries = entries

    @classmethod
    def parse(cls, body: bytes) -> TdmRepFile | None:
        """The file, or None when ``body`` is not a valid tdmrep.json."""
        raw = bytes(body)
        if len(raw) > MAX_TDMREP_BYTES:
            return None
        try:
            document = json.loads(strip_bom(raw).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None
        if not isinstance(document, list):
            return None
        entries = (
            _entry(number, item)
            for number, item in enumerate(document[:MAX_TDMREP_ENTRIES], start=1)
        )
        return cls(tuple(entry for entry in entries if entry is not None))

    def check(self, url_or_path: str) -> TdmVerdict:
        """The verdict of the first entry matching ``url_or_path`` (see the module notes)."""
        target = match_target(url_or_path)
        unreadable = False
        for entry in self.entries:
            if not entry.pattern.matches(target):
                continue
            if entry.reservation is None:
                unreadable = True
                continue
            if entry.reservation == 0 and unreadable:
                return UNSET
            return TdmVerdict(entry.reservation, entry.policy, entry.evidence, entry)
        return UNSET

    def __repr__(self) -> str:
        return f"TdmRepFile({len(self.entries)} entries)"


def _entry(number: int, item: Any) -> TdmEntry | None:
    if not isinstance(item, dict):
        return None
    location = item.get("location")
    if not isinstance(location, str) or not location:
        return None
    reservation = item.get("tdm-reservation")
    valid = type(reservation) is int and reservation in (0, 1)
    policy = item.get("tdm-policy")
    rooted = location if location.startswith(("/", "*")) else "/" + location
    return TdmEntry(
        number,
        location,
        compile_path_pattern(rooted),
        reservation if valid else None,
        policy if isinstance(policy, str) else None,
    )


def _clip(text: str, limit: int = _MAX_EVIDENCE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _as_lines(lines: Sequence[str]) -> Sequence[str]:
    # A lone str is a Sequence[str] of characters: treat it as one line.
    return [lines] if isinstance(lines, str) else lines
