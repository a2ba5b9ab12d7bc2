"""Origin files: what an origin's own files say, fetched once and shared.

An origin is scheme + host + port. The first URL of an origin loads its
files; every other URL of that origin waits for that same load
(single-flight) and reads the cached :class:`OriginPolicy`. Policies expire
after 24 hours (RFC 9309 §2.4).

The files, in order:

* ``/robots.txt`` (RFC 9309): 2xx → parsed; 4xx but 429 → no restrictions;
  429, 5xx, network errors, too many redirects → unreachable, which means
  "disallow everything", so nothing else of the origin is fetched.
* ``/ai.txt`` (Spawning; robots grammar): 2xx → parsed; anything else → no
  signal (a missing file says nothing).
* ``/.well-known/tdmrep.json`` (W3C TDMRep): 2xx and a valid file → parsed;
  anything else → "not implemented", no signal.

Bodies are read whole, up to 500 KiB (RFC 9309 §2.5). A longer robots.txt or
ai.txt is parsed up to its last complete line and recorded as ``truncated``.
A file that answered 2xx but could not be read whole (the connection broke,
the deadline passed, or a tdmrep.json too long to parse) is ``unreachable``:
what it says is unknown, so it is read the safe way (robots.txt: disallow
everything; ai.txt: disallow everything; tdmrep.json: rights reserved).

Interpreting a fetch is pure (``*_from_fetch``); fetching is a function handed
in, so this module does no I/O of its own. :func:`policy_from_files` rebuilds a
policy from snapshot rows whose bodies were kept: that is how the workers of a
cluster run read the policies its origin phase fetched, instead of fetching
every origin's files again (``origins.parquet``).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, TypeGuard

from yarl import URL

from ..lru import BoundedCache
from .decision import Denial, Reason
from .robots import MAX_ROBOTS_BYTES, RobotsPolicy, complete_lines
from .rsl import RslDocument, parse_licence
from .tdmrep import TdmRepFile

CACHE_SECONDS = 24 * 3600
MAX_ORIGIN_FILE_BYTES = MAX_ROBOTS_BYTES  # 500 KiB, for every origin file
# The estimated memory of the policies one cache holds (OriginPolicy.approx_bytes);
# a policy that had to go is fetched again when next needed.
POLICY_CACHE_BYTES = 64 * 1024 * 1024
# The same for RSL licences (Licence.approx_bytes), held apart: one licence
# serves every origin that names it.
LICENCE_CACHE_BYTES = 16 * 1024 * 1024



class FileKind(enum.StrEnum):
    """An origin file: the ``kind`` column of origins.parquet."""

    ROBOTS_TXT = "robots.txt"
    AI_TXT = "ai.txt"
    TDMREP_JSON = "tdmrep.json"
    #: an RSL licence file, wherever a robots.txt ``License`` line or a ``Link`` names it
    LICENCE = "licence"

    @property
    def path(self) -> str:
        """Where the file lives on its origin ("" for a licence: at the URL that names it)."""
        return _FILE_PATHS.get(self, "")


_FILE_PATHS = {FileKind.ROBOTS_TXT: "/robots.txt", FileKind.AI_TXT: "/ai.txt",
               FileKind.TDMREP_JSON: "/.well-known/tdmrep.json"}


class FileOutcome(enum.StrEnum):
    """What fetching an origin file came to: the ``outcome`` column of origins.parquet."""

    PARSED = "parsed"
    ABSENT = "absent"  # no file: no signal
    UNREACHABLE = "unreachable"  # what it says is unknown: read the safe way


class FetchOutcome(Protocol):
    """What the fetcher returns (net.client.SmallFetch has this shape)."""

    @property
    def http_status(self) -> int | None:
        """Set with ``error`` too when the failure came after the headers."""

    @property
    def body(self) -> bytes: ...

    @property
    def error(self) -> Denial | None: ...

    @property
    def truncated(self) -> bool:
        """The body went on past the byte limit."""

    @property
    def reached(self) -> bool:
        """False: no connection to the host was ever established."""


@dataclass(frozen=True, slots=True)
class OriginFile:
    """The snapshot of one fetched origin file: a row of origins.parquet."""

    origin: str
    kind: FileKind
    url: str
    http_status: int | None
    outcome: FileOutcome
    error: str | None
    fetched_at: datetime
    size: int
    sha256: str | None
    body: bytes | None = None  # kept with --save-consent-files, or by the origin phase
    # The reason code (dns_error, blocked_address, ...) when robots.txt could not
    # even be requested: the host was never reached. ``error`` has the evidence.
    unreached_reason: str | None = None
    # The body went on past 500 KiB: only its complete lines up to the limit were
    # parsed, and ``size``/``sha256`` describe those bytes.
    truncated: bool = False

    def to_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    """Everything an origin's own files say, as parsed objects."""

    origin: str
    robots: RobotsPolicy | None  # None when robots.txt was unreachable
    loaded_at: float  # monotonic seconds, for expiry
    files: dict[FileKind, OriginFile] = field(default_factory=dict)
    # Why robots.txt could not even be requested (DNS, blocked address, refused
    # connection, TLS handshake): the host was never reached, so nothing was said.
    unreached: Denial | None = None
    ai_txt: RobotsPolicy | None = None  # None: no ai.txt (or not fetched)
    tdmrep: TdmRepFile | None = None  # None: no valid tdmrep.json (or not fetched)

    @property
    def robots_file(self) -> OriginFile | None:
        return self.files.get(FileKind.ROBOTS_TXT)

    @property
    def approx_bytes(self) -> int:
        """The memory this policy holds, estimated: parsed files and kept bodies."""
        total = 2048 + sum(1024 + len(f.body or b"") for f in self.files.values())
        for parsed in (self.robots, self.ai_txt):
            total += parsed.approx_bytes if parsed is not None else 0
        tdm = self.files.get(FileKind.TDMREP_JSON)
        if self.tdmrep is not None and tdm is not None:
            total += 8 * tdm.size  # parsed JSON: a few objects per byte of the file
        return total


def origin_of(url: URL) -> str:
    """``scheme://host:port`` with the port always spelled out."""
    return f"{url.scheme}://{url.host}:{url.port}"


def _record(origin: str, kind: FileKind, url: str, fetched: FetchOutcome, outcome: FileOutcome,
            error: str | None, keep_body: bool, body: bytes = b"") -> OriginFile:
    parsed = outcome == FileOutcome.PARSED
    body = body if parsed else b""
    unreached = fetched.error if kind == FileKind.ROBOTS_TXT and not fetched.reached else None
    return OriginFile(
        origin=origin, kind=kind, url=url, http_status=fetched.http_status, outcome=outcome,
        error=error, fetched_at=datetime.now(UTC), size=len(body),
        sha256=hashlib.sha256(body).hexdigest() if parsed else None,
        body=body if parsed and keep_body else None,
        unreached_reason=str(unreached.reason) if unreached is not None else None,
        truncated=parsed and fetched.truncated)


def _is_2xx(fetched: FetchOutcome) -> bool:
    return fetched.http_status is not None and 200 <= fetched.http_status < 300


def _readable_lines(fetched: FetchOutcome) -> bytes:
    """The part of a robots-grammar body we may parse: all of it, or its complete lines."""
    return complete_lines(fetched.body) if fetched.truncated else fetched.body


def _cut_short(fetched: FetchOutcome) -> str:
    error = fetched.error.evidence if fetched.error else "longer than 500 KiB"
    return f"answered HTTP {fetched.http_status} but the body could not be read whole ({error})"


def robots_from_fetch(origin: str, url: str, fetched: FetchOutcome,
                      keep_body: bool = False) -> tuple[RobotsPolicy | None, OriginFile]:
    """Read a robots.txt fetch per RFC 9309 §2.3.1 and ARCHITECTURE.md §6."""
    status = fetched.http_status
    record = partial(_record, origin, FileKind.ROBOTS_TXT, url, fetched)
    if fetched.error is not None:
        error = _cut_short(fetched) if _is_2xx(fetched) else fetched.error.evidence
        outcome, robots = FileOutcome.UNREACHABLE, None
    elif _is_2xx(fetched):
        body = _readable_lines(fetched)
        return RobotsPolicy.parse(body), record(FileOutcome.PARSED, None, keep_body, body)
    elif status is not None and 400 <= status < 500 and status != 429:
        outcome, robots, error = FileOutcome.ABSENT, RobotsPolicy.allow_all(), None
    else:
        outcome, robots, error = FileOutcome.UNREACHABLE, None, f"HTTP {status}"
    return robots, record(outcome, error, keep_body)


def ai_txt_from_fetch(origin: str, url: str, fetched: FetchOutcome,
                      keep_body: bool = False) -> tuple[RobotsPolicy | None, OriginFile]:
    """ai.txt: parsed on 2xx; a 2xx body cut short is unreachable; any other answer is
    no signal."""
    record = partial(_record, origin, FileKind.AI_TXT, url, fetched)
    if _is_2xx(fetched) and fetched.error is None:
        body = _readable_lines(fetched)
        return RobotsPolicy.parse(body), record(FileOutcome.PARSED, None, keep_body, body)
    if _is_2xx(fetched):
        return None, record(FileOutcome.UNREACHABLE, _cut_short(fetched), keep_body)
    error = fetched.error.evidence if fetched.error else None
    return None, record(FileOutcome.ABSENT, error, keep_body)


def tdmrep_from_fetch(origin: str, url: str, fetched: FetchOutcome,
                      keep_body: bool = False) -> tuple[TdmRepFile | None, OriginFile]:
    """tdmrep.json: a valid file on 2xx; a 2xx body cut short (or too long to parse) is
    unreachable; anything else is "not implemented"."""
    record = partial(_record, origin, FileKind.TDMREP_JSON, url, fetched)
    if _is_2xx(fetched) and (fetched.error is not None or fetched.truncated):
        return None, record(FileOutcome.UNREACHABLE, _cut_short(fetched), keep_body)
    if _is_2xx(fetched):
        parsed = TdmRepFile.parse(fetched.body)
        if parsed is not None:
            return parsed, record(FileOutcome.PARSED, None, keep_body, fetched.body)
        return None, record(FileOutcome.ABSENT, "not a valid TDMRep file", keep_body)
    error = fetched.error.evidence if fetched.error else None
    return None, record(FileOutcome.ABSENT, error, keep_body)


def snapshot_key(row: dict[str, Any]) -> tuple[str, str, str]:
    """The key of an origins.parquet row: one row per origin file, one per licence URL."""
    url = row["url"] if row["kind"] == FileKind.LICENCE else ""
    return (row["origin"], row["kind"], url)


def origin_file_from_row(row: dict[str, Any]) -> OriginFile:
    """An :class:`OriginFile` from an ``origins.parquet`` row (older rows lack new columns)."""
    fetched_at = row["fetched_at"]
    if isinstance(fetched_at, str):
        fetched_at = datetime.fromisoformat(fetched_at)
    if fetched_at.tzinfo is None:
        fetched_at = fetched_at.replace(tzinfo=UTC)
    values = {name: row.get(name) for name in OriginFile.__slots__}
    return OriginFile(**{**values, "kind": FileKind(row["kind"]),
                         "outcome": FileOutcome(row["outcome"]), "fetched_at": fetched_at,
                         "truncated": bool(values["truncated"])})


def policy_from_files(origin: str, files: dict[FileKind, OriginFile], *, robots: bool = True,
                      ai_txt: bool = True, tdmrep: bool = True,
                      now: datetime | None = None,
                      max_age: float = CACHE_SECONDS) -> OriginPolicy | None:
    """Rebuild the policy an :class:`OriginPolicies` load would give, from snapshot rows.

    ``robots``, ``ai_txt`` and ``tdmrep`` say which files the run wants, as for
    :class:`OriginPolicies`. Returns None when the rows cannot stand in for a
    fetch: a wanted file is missing, a parsed file's body was not kept (or does
    not match its sha256), or the oldest file is ``max_age`` old. The policy's
    ``loaded_at`` is back-dated by the files' age, so it expires on time.
    """
    want = _wanted(robots, ai_txt, tdmrep)
    robots_file = files.get(FileKind.ROBOTS_TXT)
    if robots and robots_file is None:
        return None
    reached = robots_file is None or robots_file.outcome != FileOutcome.UNREACHABLE
    needed = [kind for kind, on in want.items()
              if on and (kind == FileKind.ROBOTS_TXT or reached)]
    if any(kind not in files or not _body_intact(files[kind]) for kind in needed):
        return None
    kept = {kind: files[kind] for kind in needed}
    age = _age(kept.values(), now or datetime.now(UTC))
    if age >= max_age:
        return None
    loaded_at = time.monotonic() - max(0.0, age)
    robots_policy: RobotsPolicy | None = RobotsPolicy.allow_all()
    if robots_file is not None and robots:
        robots_policy = _robots_of(robots_file)
    if robots_policy is None:
        unreached = None
        if robots_file is not None and robots_file.unreached_reason:
            unreached = Denial(Reason(robots_file.unreached_reason), robots_file.error or "")
        return OriginPolicy(origin, None, loaded_at, kept, unreached)
    ai = kept.get(FileKind.AI_TXT)
    tdm = kept.get(FileKind.TDMREP_JSON)
    return OriginPolicy(
        origin, robots_policy, loaded_at, kept, None,
        RobotsPolicy.parse(ai.body or b"") if _parsed(ai) else None,
        TdmRepFile.parse(tdm.body or b"") if _parsed(tdm) else None)


def _wanted(robots: bool, ai_txt: bool, tdmrep: bool) -> dict[FileKind, bool]:
    return {FileKind.ROBOTS_TXT: robots, FileKind.AI_TXT: ai_txt, FileKind.TDMREP_JSON: tdmrep}


def _parsed(record: OriginFile | None) -> TypeGuard[OriginFile]:
    return record is not None and record.outcome == FileOutcome.PARSED


def _body_intact(record: OriginFile) -> bool:
    if not _parsed(record):
        return True
    return record.body is not None and hashlib.sha256(record.body).hexdigest() == record.sha256


def _age(records: Iterable[OriginFile], now: datetime) -> float:
    oldest = min((r.fetched_at for r in records), default=now)
    return (now - oldest).total_seconds()


def _robots_of(record: OriginFile) -> RobotsPolicy | None:
    if record.outcome == FileOutcome.PARSED:
        return RobotsPolicy.parse(record.body or b"")
    if record.outcome == FileOutcome.ABSENT:
        return RobotsPolicy.allow_all()
    return None


Fetcher = Callable[[URL], Awaitable[FetchOutcome]]


class PolicyStore(Protocol):
    """Where loaded policies are kept, by origin (a ``dict``, or a bounded cache)."""

    def get(self, origin: str, /) -> OriginPolicy | None: ...

    def __setitem__(self, origin: str, policy: OriginPolicy, /) -> None: ...


_FileFetch = tuple[str, FetchOutcome] | None  # (file URL, outcome), None: check off


class OriginPolicies:
    """Single-flight, cached origin policies for one event loop.

    ``cache`` may outlive this object (a worker process keeps one across
    shards; by default a bounded one of its own); in-flight loads belong to a
    loop: per instance, or ``inflight``, shared by the instances of the shards
    one loop runs at once (each keeps its own ``used``).
    ``robots``, ``ai_txt`` and ``tdmrep`` say which files to fetch (a check
    turned off fetches nothing).
    """

    def __init__(self, fetch: Fetcher, cache: PolicyStore | None = None,
                 *, robots: bool = True, ai_txt: bool = True, tdmrep: bool = True,
                 keep_bodies: bool = False, max_age: float = CACHE_SECONDS,
                 inflight: dict[str, asyncio.Future[OriginPolicy]] | None = None) -> None:
        self._fetch = fetch
        self._cache: PolicyStore = cache if cache is not None else BoundedCache(
            POLICY_CACHE_BYTES, lambda policy: policy.approx_bytes)
        self._inflight = inflight if inflight is not None else {}
        self._want = _wanted(robots, ai_txt, tdmrep)
        self._keep = keep_bodies
        self._max_age = max_age
        # The origin files behind every decision this instance made (fetched or
        # cached), so each run's origins.parquet names all the files it relied on.
        self.used: dict[tuple[str, str], OriginFile] = {}

    async def get(self, url: URL) -> OriginPolicy:
        origin = origin_of(url)
        policy = self._cache.get(origin)
        if policy is None or time.monotonic() - policy.loaded_at >= self._max_age:
            pending = self._inflight.get(origin)
            if pending is None:
                pending = asyncio.ensure_future(self._load(url, origin))
                self._inflight[origin] = pending
            policy = await asyncio.shield(pending)
        for kind, record in policy.files.items():
            self.used.setdefault((origin, kind), record)
        return policy

    async def _load(self, url: URL, origin: str) -> OriginPolicy:
        try:
            policy = await self._load_files(url, origin)
            self._cache[origin] = policy
            return policy
        finally:
            self._inflight.pop(origin, None)

    def _file_url(self, url: URL, kind: FileKind) -> URL:
        # Without the user name and password of the input URL: the user gave
        # them for the image, not for the origin files (nor for origins.parquet).
        return url.with_user(None).with_path(kind.path).with_query(None) \
            .with_fragment(None)

    async def _load_files(self, url: URL, origin: str) -> OriginPolicy:
        """Fetch the origin's files all at once (within the host's slots) and read them.

        robots.txt, ai.txt and tdmrep.json go out together, so a new origin
        costs one round trip of waiting rather than two. If robots.txt turns
        out unreachable, nothing of the origin will be fetched and the other
        two are cancelled, or their answers dropped unread: never used, nor
        recorded, nor waited for (a stalling host would hold the origin for a
        second timeout while its third file waited for a host slot).
        """
        others = [asyncio.create_task(self._fetch_file(url, kind))
                  for kind in (FileKind.AI_TXT, FileKind.TDMREP_JSON)]
        try:
            return await self._read_files(url, origin, others)
        finally:
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

    async def _read_files(self, url: URL, origin: str,
                          others: list[asyncio.Task[_FileFetch]]) -> OriginPolicy:
        """robots.txt, then (unless it is unreachable) the ``others``: ai.txt, tdmrep.json."""
        robots_file = await self._fetch_file(url, FileKind.ROBOTS_TXT)
        files: dict[FileKind, OriginFile] = {}
        robots: RobotsPolicy | None = RobotsPolicy.allow_all()
        if robots_file is not None:
            target, fetched = robots_file
            robots, files[FileKind.ROBOTS_TXT] = robots_from_fetch(
                origin, target, fetched, self._keep)
            if robots is None:  # unreachable: nothing of this origin will be fetched
                return OriginPolicy(origin, None, time.monotonic(), files,
                                    None if fetched.reached else fetched.error)
        ai_file, tdmrep_file = await asyncio.gather(*others)
        ai_txt: RobotsPolicy | None = None
        if ai_file is not None:
            ai_txt, files[FileKind.AI_TXT] = ai_txt_from_fetch(origin, *ai_file, self._keep)
        tdmrep: TdmRepFile | None = None
        if tdmrep_file is not None:
            tdmrep, files[FileKind.TDMREP_JSON] = tdmrep_from_fetch(
                origin, *tdmrep_file, self._keep)
        return OriginPolicy(origin, robots, time.monotonic(), files, None, ai_txt, tdmrep)

    async def _fetch_file(self, url: URL, kind: FileKind) -> _FileFetch:
        """(file URL, fetch outcome) of one origin file, or None if its check is off."""
        if not self._want[kind]:
            return None
        target = self._file_url(url, kind)
        return str(target), await self._fetch(target)


# -- RSL licences: fetched once per licence URL, shared by every origin naming it ------

@dataclass(frozen=True, slots=True)
class Licence:
    """One fetch of an RSL licence file: its origins.parquet row and the parsed licence."""

    record: OriginFile
    #: None: unreachable or not valid RSL (``record.error`` says which)
    document: RslDocument | None
    loaded_at: float  # monotonic seconds, for expiry

    @property
    def approx_bytes(self) -> int:
        """Memory held, estimated: the parsed document is a few objects per byte."""
        return 2048 + len(self.record.body or b"") + 8 * self.record.size


def licence_from_fetch(url: str, fetched: FetchOutcome, keep_body: bool = False) -> Licence:
    """A licence fetch read as ARCHITECTURE.md §6 says: a 2xx body read whole that is valid
    RSL is parsed; anything else (another status, a body cut short, not valid RSL) is
    unreachable."""
    record = partial(_record, origin_of(URL(url)), FileKind.LICENCE, url, fetched)
    now = time.monotonic()
    if not _is_2xx(fetched):
        error = fetched.error.evidence if fetched.error else f"HTTP {fetched.http_status}"
        return Licence(record(FileOutcome.UNREACHABLE, error, keep_body), None, now)
    if fetched.error is not None or fetched.truncated:
        return Licence(record(FileOutcome.UNREACHABLE, _cut_short(fetched), keep_body),
                       None, now)
    parsed = parse_licence(fetched.body)
    if isinstance(parsed, str):
        error = f"answered HTTP {fetched.http_status} but is not a valid RSL licence: {parsed}"
        return Licence(record(FileOutcome.UNREACHABLE, error, keep_body), None, now)
    return Licence(record(FileOutcome.PARSED, None, keep_body, fetched.body), parsed, now)


class LicenceStore(Protocol):
    """Where fetched licences are kept, by licence URL (a ``dict``, or a bounded cache)."""

    def get(self, url: str, /) -> Licence | None: ...

    def __setitem__(self, url: str, licence: Licence, /) -> None: ...


#: fetch a licence URL; the second argument is the host whose request slot the
#: caller holds (the response that named the licence), or None
LicenceFetcher = Callable[[URL, str | None], Awaitable[FetchOutcome]]


class Licences:
    """Single-flight, cached RSL licences for one event loop, by licence URL.

    As :class:`OriginPolicies`: ``cache`` may outlive this object, in-flight
    fetches are per instance or ``inflight`` (shared by one loop's shards).
    ``used`` names every licence a decision relied on.
    """

    def __init__(self, fetch: LicenceFetcher, cache: LicenceStore | None = None, *,
                 keep_bodies: bool = False, max_age: float = CACHE_SECONDS,
                 inflight: dict[str, asyncio.Future[Licence]] | None = None) -> None:
        self._fetch = fetch
        self._cache: LicenceStore = cache if cache is not None else BoundedCache(
            LICENCE_CACHE_BYTES, lambda licence: licence.approx_bytes)
        self._inflight = inflight if inflight is not None else {}
        self._keep = keep_bodies
        self._max_age = max_age
        self.used: dict[str, OriginFile] = {}

    async def get(self, url: str, *, held_host: str | None = None) -> Licence:
        """The licence at ``url``; ``held_host``: the host whose slot the caller holds."""
        licence = self._cache.get(url)
        if licence is None or time.monotonic() - licence.loaded_at >= self._max_age:
            pending = self._inflight.get(url)
            if pending is None:
                pending = asyncio.ensure_future(self._load(URL(url), url, held_host))
                self._inflight[url] = pending
            licence = await asyncio.shield(pending)
        self.used.setdefault(url, licence.record)
        return licence

    async def get_all(self, urls: Iterable[str], *,
                      held_host: str | None = None) -> list[Licence]:
        """:meth:`get` for each of ``urls``, concurrently, in their order."""
        return list(await asyncio.gather(*(self.get(u, held_host=held_host) for u in urls)))

    async def _load(self, target: URL, url: str, held_host: str | None) -> Licence:
        try:
            licence = licence_from_fetch(url, await self._fetch(target, held_host),
                                         self._keep)
            self._cache[url] = licence
            return licence
        finally:
            self._inflight.pop(url, None)
