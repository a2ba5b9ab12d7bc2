"""User-supplied opt-out and opt-in lists: URLs, URL prefixes, hosts, sha256.

No public registry offers an offline download, so users bring their own lists
(``--opt-out-list FILE``, repeatable; ``--opt-in-list FILE``). A
:class:`ConsentList` loads them once and answers, without any network,
"is this URL listed?" and "is this content hash listed?", with the list file
and the entry behind every answer (:class:`ListHit`).

Formats (the name says which; ``.gz``, ``.bz2``, ``.xz`` — and ``.zst`` when
fsspec can decompress it — may follow):

* ``.parquet``/``.pq``, ``.csv``, ``.jsonl``/``.ndjson``/``.json`` (one JSON
  object a line): any of the columns (keys) ``url``, ``url_prefix``, ``host``,
  ``sha256``, and an optional ``source`` saying where the entry came from
  (it is quoted in the evidence). Every non-empty cell of a row is an entry;
  empty and null cells are skipped. In ``url_prefix`` a trailing ``*`` may be
  written or not. A ``sha256`` cell may be text (64 hex digits) or, in
  parquet, 32 raw bytes.
* ``.txt``: one entry a line: 64 hex digits is a sha256; an entry with
  ``://`` is a URL, or a URL prefix when it ends with ``*``; anything else is
  a host. Blank lines and lines starting with ``#`` are skipped, and so is a
  ``#`` comment after whitespace (no entry holds whitespace).

Files are local paths or fsspec URLs (``s3://``, ``memory://``, ...), read
by :func:`consentfetch.lists.load_lists` through the tables layer
(:mod:`consentfetch.tables`); this module does no file I/O: it receives the
files' records (:class:`ListBuilder`) and answers lookups.
A file we cannot use raises :class:`~consentfetch.errors.InputError` naming
it: missing, unreadable, not UTF-8, an unknown extension, or (tables) none of
the four columns. A malformed *entry* does not: a sha256 that is not 64 hex
digits, a URL without a scheme or host or with a bad port, a host holding
``/``, ``:`` (IPv6 aside) or spaces (write ``https://example.com:8080/*`` to
list one port), a cell that is not text, an invalid JSON line, a CSV record
the parser rejects, a line (or CSV record) longer than 4 MiB. Such entries are skipped and
counted, and one warning per file gives the count and the first of them: a
list of millions of rows should not be refused for a few bad ones, and the
warning makes the gap visible.

Matching
--------
* ``host``: the URL's hostname, exactly and case-insensitively, any port and
  any scheme (``example.com`` does not cover ``www.example.com``).
* ``url``: the whole URL; ``url_prefix``: the URL starts with the prefix. Both
  sides are first normalised: scheme and host lower-cased, the default port
  (``:80`` for http, ``:443`` for https) dropped, user info and fragment
  dropped, an empty path read as ``/``. A trailing dot of the host is dropped
  too (``example.com.`` is ``example.com``). The path and query are compared
  as written: case-sensitive, percent-escapes not decoded. A prefix covers
  one origin only (scheme, host, port): ``https://example.com/art`` covers
  ``/art/a.jpg`` and ``/artist/`` but never ``https://example.com.evil/``;
  ``https://example.com*`` covers the whole origin. ``*`` is a wildcard
  nowhere else: a host entry ``*.example.com`` is malformed.
* Hosts are compared as written in the URL and the list, lower-cased: a
  non-ASCII host is not converted to its IDNA (``xn--``) form nor back, so
  ``bücher.example`` and ``xn--bcher-kva.example`` are different entries
  (list both if your URLs use both spellings). IPv6 hosts are written
  ``[::1]`` in URLs; a host entry may be ``::1`` or ``[::1]``.
* ``sha256``: the hex digest, case-insensitively.
* A URL we cannot parse (no ``scheme://host``, a bad port) matches nothing:
  it will fail as ``invalid_url`` anyway.

When several entries match, a URL entry is reported before a prefix, and a
prefix before a host. Among prefixes the shortest matching one is reported;
among identical entries (after normalisation) the first loaded wins.

Evidence (:attr:`ListHit.evidence`) names the list file as given, the kind,
the entry as written and the row's source:
``opt-out list optout.csv: url_prefix https://example.com/art/ (source:
artist request 2026-03)``. ``"opt-out"``/``"opt-in"`` is the ``role`` the
loader was given; without one the evidence starts ``list optout.csv:``,
which is true whichever option the file came from.

Scale: lists may hold millions of entries. URLs, hosts and hashes are dict
keys (one lookup each). Prefixes are grouped by origin; within an origin they
are sorted and those covered by a shorter prefix are set aside, so at most one
candidate — the greatest prefix not after the URL — needs checking: a binary
search, never a scan of all prefixes.
"""

from __future__ import annotations

import bisect
import enum
import ipaddress
import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ConfigError, InputError

__all__ = ["KINDS", "ConsentList", "EntryKind", "ListBuilder", "ListHit", "ListRecord",
           "check_role"]

logger = logging.getLogger(__name__)



class EntryKind(enum.StrEnum):
    """What a list entry names (a column of a csv/parquet/jsonl list), and so what a
    :class:`ListHit` matched: in the audit's ``evidence_rule`` as written."""

    URL = "url"
    URL_PREFIX = "url_prefix"
    HOST = "host"
    SHA256 = "sha256"


KINDS = tuple(EntryKind)  # the entry columns of a list, in the order they are read
_SOURCE = "source"
_ROLES = (None, "opt-out", "opt-in")

TXT = "line"  # the one column of a txt list's records (consentfetch.tables.LINE)
_SHA256 = re.compile(r"[0-9A-Fa-f]{64}")
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^#]*)(?:#.*)?", re.DOTALL)
_HOST = re.compile(r"[^\s/?#@:*\[\]\\]+")
_TXT_COMMENT = re.compile(r"\s#.*", re.DOTALL)
_DEFAULT_PORTS = {"http": "80", "https": "443"}


@dataclass(frozen=True, slots=True)
class ListHit:
    """A list entry that matched, and where it came from."""

    list_name: str  # the file path/URL as given
    kind: EntryKind
    entry: str  # the entry as written in the file
    source: str | None  # the row's ``source`` column, if any
    role: str | None = None  # "opt-out", "opt-in", or None when the loader did not say

    @property
    def evidence(self) -> str:
        """E.g. ``opt-out list optout.csv: url_prefix https://example.com/art/
        (source: artist request 2026-03)``; without a role, ``list optout.csv: ...``."""
        label = f"{self.role} list" if self.role else "list"
        text = f"{label} {self.list_name}: {self.kind} {self.entry}"
        return f"{text} (source: {self.source})" if self.source else text


# ------------------------------------------------------------ normalisation


@dataclass(frozen=True, slots=True)
class _Url:
    origin: str  # "scheme://host[:port]", normalised
    target: str  # path + query as written, starting with "/"
    host: str  # lower-cased, no brackets, no trailing dot


def _parse_url(text: str) -> _Url | None:
    """A URL split and normalised (see the module docstring), or None."""
    match = _URL.fullmatch(text.strip())
    if match is None:
        return None
    scheme = match[1].lower()
    split = _split_authority(match[2].rpartition("@")[2])
    if split is None:
        return None
    host, port = split
    if port == _DEFAULT_PORTS.get(scheme):
        port = ""
    shown = f"[{host}]" if ":" in host else host
    origin = f"{scheme}://{shown}:{port}" if port else f"{scheme}://{shown}"
    target = match[3]
    return _Url(origin, target if target.startswith("/") else "/" + target, host)


def _split_authority(hostport: str) -> tuple[str, str] | None:
    """``(host, port)`` of ``host[:port]`` or ``[v6][:port]``; port "" if none."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return None
        host, rest = hostport[1:end], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:]
    else:
        host, _, port = hostport.partition(":")
    host = _clean_host(host)
    if not (_HOST.fullmatch(host) or (hostport.startswith("[") and _is_ipv6(host))):
        return None
    if port and not (port.isascii() and port.isdigit() and int(port) < 65536):
        return None
    return host, str(int(port)) if port else ""


def _clean_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


def _parse_host(text: str) -> str | None:
    """A host entry, normalised like a URL's hostname, or None if it is not one."""
    host = _clean_host(text)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host if _HOST.fullmatch(host) or _is_ipv6(host) else None


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------- index

# What a table stores for an entry: the list's index when the entry as written
# is the key itself (the common case, and the cheapest to keep by the million),
# else (list index, entry as written, source).
_Stored = int | tuple[int, str, str | None]


class _PrefixIndex:
    """The URL prefixes of one origin: sorted, none covering another."""

    __slots__ = ("targets", "stored")

    def __init__(self, entries: dict[str, _Stored]) -> None:
        self.targets: list[str] = []
        self.stored: list[_Stored] = []
        for target in sorted(entries):
            # in sorted order, the targets starting with a kept prefix follow it
            if not self.targets or not target.startswith(self.targets[-1]):
                self.targets.append(target)
                self.stored.append(entries[target])

    def find(self, target: str) -> _Stored | None:
        # Prefix-free and sorted: a prefix of ``target`` sorts at or before it,
        # and anything between that prefix and ``target`` would start with the
        # prefix. So only the greatest prefix <= target can match.
        i = bisect.bisect_right(self.targets, target) - 1
        if i >= 0 and target.startswith(self.targets[i]):
            return self.stored[i]
        return None


class _Tables:
    """Entries being loaded, keyed by their normalised form; first one wins."""

    def __init__(self) -> None:
        self.urls: dict[str, _Stored] = {}
        self.prefixes: dict[str, dict[str, _Stored]] = {}
        self.hosts: dict[str, _Stored] = {}
        self.sha256: dict[str, _Stored] = {}
        self._sources: dict[str, str] = {}  # one object per distinct source text

    def add(self, list_index: int, kind: EntryKind, entry: str,
            source: str | None) -> str | None:
        """Add one entry; the reason it is malformed, or None when added."""
        if source is not None:
            source = self._sources.setdefault(source, source)
        if kind == EntryKind.SHA256:
            if not _SHA256.fullmatch(entry):
                return f"sha256 {entry!r} is not 64 hex digits"
            self._put(self.sha256, entry.lower(), list_index, entry, source)
        elif kind == EntryKind.HOST:
            host = _parse_host(entry)
            if host is None:
                wildcard = " (no wildcards: list each host)" if "*" in entry else ""
                return f"host {entry!r} is not a hostname{wildcard}"
            self._put(self.hosts, host, list_index, entry, source)
        elif kind == EntryKind.URL:
            url = _parse_url(entry)
            if url is None:
                return f"url {entry!r} is not a scheme://host/... URL"
            self._put(self.urls, url.origin + url.target, list_index, entry, source)
        else:
            url = _parse_url(entry[:-1] if entry.endswith("*") else entry)
            if url is None:
                return f"url_prefix {entry!r} is not a scheme://host/... URL"
            stored: _Stored = (list_index, entry, source)
            self.prefixes.setdefault(url.origin, {}).setdefault(url.target, stored)
        return None

    @staticmethod
    def _put(table: dict[str, _Stored], key: str, list_index: int, entry: str,
             source: str | None) -> None:
        if key not in table:
            table[key] = list_index if entry == key and source is None else (
                list_index, entry, source)


# ------------------------------------------------------------------- lists


class ConsentList:
    """Opt-out (or opt-in) entries from user-supplied list files.

    Build it with :class:`ListBuilder` (files: :func:`consentfetch.lists.load_lists`);
    it is read-only afterwards, holds no open file, and pickles (to send to
    worker processes).
    """

    __slots__ = ("names", "role", "_urls", "_prefixes", "_hosts", "_sha256", "_size")

    names: tuple[str, ...]
    role: str | None

    def __init__(self, names: Sequence[str] = (), *, role: str | None = None,
                 _tables: _Tables | None = None) -> None:
        check_role(role)
        tables = _tables or _Tables()
        self.names = tuple(names)
        self.role = role
        self._urls = tables.urls
        self._hosts = tables.hosts
        self._sha256 = tables.sha256
        self._prefixes = {origin: _PrefixIndex(entries)
                          for origin, entries in tables.prefixes.items()}
        self._size = (len(tables.urls) + len(tables.hosts) + len(tables.sha256)
                      + sum(len(entries) for entries in tables.prefixes.values()))

    def match_url(self, url: str) -> ListHit | None:
        """The entry listing ``url``: a URL, else a URL prefix, else its host."""
        parsed = _parse_url(url)
        if parsed is None:
            return None
        stored = self._urls.get(parsed.origin + parsed.target)
        if stored is not None:
            return self._hit(EntryKind.URL, parsed.origin + parsed.target, stored)
        index = self._prefixes.get(parsed.origin)
        if index is not None and (stored := index.find(parsed.target)) is not None:
            return self._hit(EntryKind.URL_PREFIX, "", stored)
        stored = self._hosts.get(parsed.host)
        if stored is not None:
            return self._hit(EntryKind.HOST, parsed.host, stored)
        return None

    def match_sha256(self, hexdigest: str) -> ListHit | None:
        """The entry listing this content hash (hex, any case)."""
        key = hexdigest.strip().lower()
        stored = self._sha256.get(key)
        return None if stored is None else self._hit(EntryKind.SHA256, key, stored)

    def __len__(self) -> int:
        """Distinct entries (after normalisation) over all the files."""
        return self._size

    def __repr__(self) -> str:
        return f"ConsentList({list(self.names)!r}, role={self.role!r}, entries={self._size})"

    @property
    def has_sha256(self) -> bool:
        """Does any list hold a content hash (worth hashing downloaded bytes for)?"""
        return bool(self._sha256)

    def _hit(self, kind: EntryKind, key: str, stored: _Stored) -> ListHit:
        if isinstance(stored, int):
            return ListHit(self.names[stored], kind, key, None, self.role)
        index, entry, source = stored
        return ListHit(self.names[index], kind, entry, source, self.role)


def check_role(role: str | None) -> None:
    if role not in _ROLES:
        raise ConfigError(f"list role must be 'opt-out', 'opt-in' or None (got {role!r})")


# ----------------------------------------------------------------- records


class ListRecord(Protocol):
    """One record of a list file, as the tables layer reads it."""

    @property
    def where(self) -> str: ...  # "line 3", "row 17"

    @property
    def values(self) -> Mapping[str, Any] | None: ...  # by column; None: unreadable

    @property
    def error(self) -> str | None: ...  # why the record could not be read


@dataclass(slots=True)
class _Malformed:
    """Malformed entries of one file: how many, and the first one."""

    count: int = 0
    first: str | None = None

    def add(self, where: str, message: str) -> None:
        self.count += 1
        if self.first is None:
            self.first = f"{where}: {message}"


# (where in the file, kind, cell value, source value); kind None: the value
# says why the record is malformed (an invalid JSON line, a bad CSV record)
_Cell = tuple[str, EntryKind | None, Any, Any]


class ListBuilder:
    """The entries of list files, added file by file from their records."""

    def __init__(self, names: Sequence[str], *, role: str | None = None) -> None:
        check_role(role)
        self.names = tuple(names)
        self.role = role
        self._tables = _Tables()

    def add_file(self, index: int, fmt: str, records: Iterable[ListRecord]) -> None:
        """Add the entries of ``names[index]``, a ``fmt`` file (txt, csv, jsonl,
        parquet) whose ``records`` the tables layer reads; malformed entries are
        counted and warned about, not raised."""
        name = self.names[index]
        malformed = _Malformed()
        added = 0
        for where, kind, value, source in _cells(records, fmt, name):
            if kind is None:
                problem = value
            else:
                entry, problem = _entry_text(kind, value)
                if problem is None and entry is not None:
                    problem = self._tables.add(index, kind, entry, _source_text(source))
                    added += problem is None
            if problem is not None:
                malformed.add(where, problem)
        if malformed.count:
            logger.warning("%s: skipped %d malformed entr%s (first: %s)", name, malformed.count,
                           "y" if malformed.count == 1 else "ies", malformed.first)
        if not added:
            logger.warning("%s: the list holds no entry", name)
        logger.info("%s: %d entries read", name, added)

    def build(self) -> ConsentList:
        result = ConsentList(self.names, role=self.role, _tables=self._tables)
        logger.debug("%s lists %s: %d entries", self.role or "consent", ", ".join(self.names),
                     len(result))
        return result


def list_columns(name: str, columns: Sequence[str]) -> list[str]:
    """The columns of a csv or parquet list to read: its entry kinds, and ``source``.

    Raises :class:`InputError` when it has no entry column at all.
    """
    kinds = [str(kind) for kind in KINDS if kind in columns]
    if not kinds:
        raise _no_column(name, columns)
    return kinds + ([_SOURCE] if _SOURCE in columns else [])


def _cells(records: Iterable[ListRecord], fmt: str, name: str) -> Iterator[_Cell]:
    seen = keyed = False
    for record in records:
        seen = True
        if record.values is None:
            yield record.where, None, record.error or "malformed record", None
        elif fmt == "txt":
            yield from _txt_cell(record.where, record.values[TXT])
        else:
            values, where = record.values, record.where
            source = values.get(_SOURCE)
            for kind in KINDS:
                if kind in values:
                    keyed = True
                    yield where, kind, values[kind], source
    if fmt == "jsonl" and seen and not keyed:
        raise _no_column(name, [])


def _txt_cell(where: str, line: str) -> Iterator[_Cell]:
    entry = _TXT_COMMENT.sub("", line).strip()
    if entry and not entry.startswith("#"):
        yield where, _txt_kind(entry), entry, None


def _entry_text(kind: EntryKind, value: Any) -> tuple[str | None, str | None]:
    """``(entry, None)``, ``(None, None)`` for an empty cell, or ``(None, problem)``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, None
    if isinstance(value, bytes | bytearray):
        if kind == EntryKind.SHA256 and len(value) == 32:
            return bytes(value).hex(), None
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None, f"{kind} cell holds bytes that are not UTF-8"
    if not isinstance(value, str):
        return None, f"{kind} cell is not text (got {type(value).__name__})"
    value = value.strip()
    return (value or None), None


def _source_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = (bytes(value).decode("utf-8", "replace") if isinstance(value, bytes | bytearray)
            else str(value)).strip()
    return text or None


def _no_column(name: str, available: Sequence[str]) -> InputError:
    have = ", ".join(repr(a) for a in available) or "none"
    return InputError(f"{name}: no url, url_prefix, host or sha256 column (the file has {have})")


def _txt_kind(entry: str) -> EntryKind:
    if _SHA256.fullmatch(entry):
        return EntryKind.SHA256
    if "://" in entry:
        return EntryKind.URL_PREFIX if entry.endswith("*") else EntryKind.URL
    return EntryKind.HOST
