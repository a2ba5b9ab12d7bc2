"""What a process keeps across the shards (and runs) it works on: one object, keyed, bounded.

A worker process, a notebook calling ``fetch_shards`` twice, or a Spark/Ray
worker reused across jobs keeps two things between shards:

* **origin policies** (robots.txt, ai.txt, tdmrep.json, parsed), keyed by the
  origin *and* by everything that shaped the policy (:class:`PolicyKey`: the
  files the run fetched, whether bodies were kept, the User-Agent they were
  asked with, the address-guard settings), so a policy made under one run's
  ``--ignore robots_txt`` never answers for a run that checks robots.txt;
  held within a memory budget, least recently used first out (a dropped policy
  is fetched again, as RFC 9309 allows at any time);
* **RSL licences**, by the same key and licence URL, within their own memory
  budget (``LICENCE_CACHE_BYTES``), so a licence named by many origins is
  fetched once per process;
* **consent lists** (``--opt-out-list``/``--opt-in-list``), keyed by role, paths,
  storage options and each file's fsspec ``ukey`` (so an edited list is read
  again), a handful at most;
* **where each origin's files are in ``origins.parquet``** (:class:`OriginIndex`),
  for the output folder the process last worked on: which part last holds an
  origin's files, so a shard reads the parts holding its origins and no other,
  and each part's origin column is read once per process rather than once per
  shard; at most ``ORIGIN_INDEX_ENTRIES`` origins (parts added beyond are
  searched by their row groups' statistics, as without the index);
* **the decode budget** (``--max-decoded-bytes``): one per process, shared by
  the image threads of every shard it runs, so the decoded pixels in flight
  stay within one limit however many shards or runs a process takes on.

Policies seeded from ``origins.parquet`` are marked, so a shard sends back only
the origin files it fetched itself.

Other modules reach the state through :func:`process_cache`, never by
writing module globals.
"""

from __future__ import annotations

import bisect
import json
import logging
from dataclasses import dataclass
from typing import Any

import fsspec

from .config import FetchConfig
from .consent.origins import LICENCE_CACHE_BYTES, POLICY_CACHE_BYTES, Licence, OriginPolicy
from .consent.registry import ConsentList
from .image import DecodeBudget
from .lists import load_lists
from .lru import BoundedCache

logger = logging.getLogger(__name__)

LIST_CACHE_ENTRIES = 8  # consent-list sets (a run uses at most two)
# Origins the OriginIndex maps to their part: about 80 bytes each (a dict entry
# keyed by the origin's hash), so about 40 MB at the most.
ORIGIN_INDEX_ENTRIES = 500_000


@dataclass(frozen=True, slots=True)
class PolicyKey:
    """Everything besides the origin that shapes an origin policy."""

    robots_txt: bool
    ai_txt: bool
    tdmrep: bool
    keep_bodies: bool
    user_agent: str  # a site may answer another robots.txt to another agent
    allow_private_networks: bool
    allowed_networks: tuple[str, ...]
    ca_file: str | None  # which certificates are trusted decides which hosts answer

    @classmethod
    def of(cls, config: FetchConfig, *, keep_bodies: bool) -> PolicyKey:
        return cls(config.enabled("robots_txt"), config.enabled("ai_txt"),
                   config.enabled("tdmrep"), keep_bodies, config.user_agent,
                   config.allow_private_networks, config.allowed_networks, config.ca_file)


@dataclass(frozen=True, slots=True)
class _Entry:
    policy: OriginPolicy
    seeded: bool  # taken from origins.parquet, not fetched by this process


class LicenceView:
    """The cached RSL licences of one :class:`PolicyKey`, by URL (an origins.LicenceStore)."""

    def __init__(self, cache: BoundedCache[tuple[PolicyKey, str], Licence],
                 key: PolicyKey) -> None:
        self._cache = cache
        self._key = key

    def get(self, url: str, /) -> Licence | None:
        return self._cache.get((self._key, url))

    def __setitem__(self, url: str, licence: Licence, /) -> None:
        self._cache[(self._key, url)] = licence


class PolicyView:
    """The cached policies of one :class:`PolicyKey`, by origin (an origins.PolicyStore)."""

    def __init__(self, cache: BoundedCache[tuple[PolicyKey, str], _Entry],
                 key: PolicyKey) -> None:
        self._cache = cache
        self._key = key

    def get(self, origin: str, /) -> OriginPolicy | None:
        entry = self._cache.get((self._key, origin))
        return entry.policy if entry is not None else None

    def __setitem__(self, origin: str, policy: OriginPolicy, /) -> None:
        self._cache[(self._key, origin)] = _Entry(policy, seeded=False)

    def seed(self, origin: str, policy: OriginPolicy) -> None:
        """Add a policy read from origins.parquet."""
        self._cache[(self._key, origin)] = _Entry(policy, seeded=True)

    def seeded(self, origin: str) -> bool:
        """Whether the policy cached for ``origin`` came from origins.parquet."""
        entry = self._cache.get((self._key, origin))
        return entry is not None and entry.seeded


class OriginIndex:
    """Which part of an output folder's ``origins.parquet`` last holds each origin's files.

    Parts are added oldest first (:meth:`add`), each once; :meth:`parts_for`
    then names, for a set of origins, the parts to read, which of the origins
    each may hold and in which row groups. Origins are held by their ``hash()``
    (this process's only): a collision at worst sends a lookup to a part that
    lacks the origin, which the reader sees. Past ``max_entries`` (origins and
    row groups), further parts are kept as *unsearched*: every lookup names them
    with all its origins.
    """

    def __init__(self, folder: str, max_entries: int = ORIGIN_INDEX_ENTRIES) -> None:
        #: the output folder's URL
        self.folder = folder
        self.max_entries = max_entries
        #: the parts added, oldest first
        self.parts: list[str] = []
        self._known: set[str] = set()
        self._unsearched: list[int] = []  # ordinals of parts added when full
        # By ordinal: each row group's first origin (None: not known, search the part
        # by its row groups' statistics).
        self._firsts: list[list[str] | None] = []
        self._held = 0  # origins and row-group firsts held: what max_entries bounds
        self._where: dict[int, int] = {}  # origin hash -> ordinal of its latest part

    def __len__(self) -> int:
        """Origins and row groups held (what ``max_entries`` bounds)."""
        return self._held

    def __contains__(self, part: object) -> bool:
        return part in self._known

    def stale(self, parts: list[str]) -> bool:
        """Whether the folder, whose parts are now ``parts`` (sorted), no longer fits
        the index: a part indexed is gone (the folder was written anew), or a new
        one sorts before the newest indexed (so "latest" would be wrong)."""
        if not self._known.issubset(parts):
            return True
        newest = self.parts[-1] if self.parts else ""
        return any(part < newest for part in parts if part not in self._known)

    def add(self, part: str, origins: list[str], firsts: list[str] | None) -> None:
        """Record that ``part``, newer than those added before, holds ``origins``' files,
        in row groups whose first rows' origins are ``firsts`` (the part sorted by
        origin; None when it is not)."""
        ordinal = len(self.parts)
        self.parts.append(part)
        self._known.add(part)
        size = len(origins) + len(firsts or ())
        if self._held + size > self.max_entries:
            self._unsearched.append(ordinal)
            self._firsts.append(None)
            return
        self._firsts.append(firsts)
        self._held += size
        for origin in origins:
            self._where[hash(origin)] = ordinal

    def parts_for(self, origins: set[str]) -> list[tuple[str, set[str], list[int] | None]]:
        """The parts that may hold ``origins``' latest files, oldest first, each with
        the origins to look for in it and the row groups to read (None: not known;
        the row groups' statistics must tell)."""
        found: dict[int, set[str]] = {ordinal: set(origins) for ordinal in self._unsearched}
        for origin in origins:
            ordinal = self._where.get(hash(origin))
            if ordinal is not None:
                found.setdefault(ordinal, set()).add(origin)
        return [(self.parts[o], found[o], _groups(self._firsts[o], found[o]))
                for o in sorted(found)]


def _groups(firsts: list[str] | None, values: set[str]) -> list[int] | None:
    return None if firsts is None else row_groups(firsts, values)


def row_groups(firsts: list[str], values: set[str]) -> list[int]:
    """The row groups of a file sorted by a column, whose row groups' first values
    are ``firsts``, that may hold ``values``: a value's rows may begin in the group
    before the first one it starts."""
    groups: set[int] = set()
    for value in values:
        low = max(0, bisect.bisect_left(firsts, value) - 1)
        high = max(low, bisect.bisect_right(firsts, value) - 1)
        groups.update(range(low, high + 1))
    return sorted(groups)


_ListKey = tuple[str, tuple[str, ...], str, tuple[str, ...]]


class WorkerCache:
    """The per-process cache of origin policies and consent lists."""

    def __init__(self, *, policy_bytes: int = POLICY_CACHE_BYTES,
                 list_entries: int = LIST_CACHE_ENTRIES,
                 licence_bytes: int = LICENCE_CACHE_BYTES,
                 index_entries: int = ORIGIN_INDEX_ENTRIES) -> None:
        self._policies: BoundedCache[tuple[PolicyKey, str], _Entry] = BoundedCache(
            policy_bytes, lambda entry: entry.policy.approx_bytes)
        self._lists: BoundedCache[_ListKey, ConsentList] = BoundedCache(
            list_entries, lambda _: 1)
        self._licences: BoundedCache[tuple[PolicyKey, str], Licence] = BoundedCache(
            licence_bytes, lambda licence: licence.approx_bytes)
        self._budget: DecodeBudget | None = None
        self._index: OriginIndex | None = None
        self._index_entries = index_entries

    @property
    def policies(self) -> BoundedCache[tuple[PolicyKey, str], _Entry]:
        """The cache itself, for tests and measurements."""
        return self._policies

    def policy_view(self, config: FetchConfig, *, keep_bodies: bool) -> PolicyView:
        """The policies of runs shaped like ``config`` (see :class:`PolicyKey`)."""
        return PolicyView(self._policies, PolicyKey.of(config, keep_bodies=keep_bodies))

    def licence_view(self, config: FetchConfig) -> LicenceView:
        """The RSL licences of runs shaped like ``config`` (same agent, guard, bodies kept)."""
        return LicenceView(self._licences,
                           PolicyKey.of(config, keep_bodies=config.save_consent_files))

    def lists(self, role: str, paths: tuple[str, ...],
              storage_options: dict[str, Any] | None = None) -> ConsentList | None:
        """The ``role`` lists at ``paths``, read again only when a file has changed."""
        if not paths:
            return None
        options = storage_options or {}
        key = (role, paths, json.dumps(options, sort_keys=True, default=repr),
               _fingerprints(paths, options))
        loaded = self._lists.get(key)
        if loaded is None:
            loaded = load_lists(paths, role=role, storage_options=options or None)
            self._lists[key] = loaded
        return loaded

    def origin_index(self, folder: str, parts: list[str]) -> OriginIndex:
        """The :class:`OriginIndex` of the output folder ``folder``, whose parts are now
        ``parts``; a new, empty one for another folder than the last, or when a part
        indexed is gone (the folder was written again, as with ``--overwrite``).
        Adding the parts not yet indexed is the caller's part."""
        index = self._index
        if index is None or index.folder != folder or index.stale(parts):
            index = self._index = OriginIndex(folder, self._index_entries)
        return index

    def decode_budget(self, limit: int) -> DecodeBudget:
        """The process's budget of decoded image bytes; a run with another limit replaces
        it (images still holding the old one give their bytes back to it)."""
        if self._budget is None or self._budget.limit != limit:
            self._budget = DecodeBudget(limit)
        return self._budget

    def clear(self) -> None:
        """Forget everything (tests; a library user who wants a clean slate)."""
        self._policies.clear()
        self._lists.clear()
        self._licences.clear()
        self._index = None


def _fingerprints(paths: tuple[str, ...], options: dict[str, Any]) -> tuple[str, ...]:
    """Each file's fsspec ``ukey`` (size, modification time...), "" when not knowable.

    A file that cannot be looked at gets "" and is then read by load_lists,
    which reports the problem as an InputError.
    """
    keys = []
    for path in paths:
        try:
            fs, inner = fsspec.core.url_to_fs(path, **options)
            keys.append(str(fs.ukey(inner)))
        except (OSError, ValueError, NotImplementedError) as exc:
            logger.debug("%s: no fingerprint (%s)", path, exc)
            keys.append("")
    return tuple(keys)


_PROCESS = WorkerCache()


def process_cache() -> WorkerCache:
    """This process's :class:`WorkerCache`."""
    return _PROCESS
