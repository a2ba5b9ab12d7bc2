"""Origin policy: what an origin's own files (robots.txt, ...) say, fetched once.

An origin is scheme + host + port. The first URL of an origin fetches its
robots.txt; every other URL of that origin waits for that same fetch
(single-flight) and then reads the cached :class:`OriginPolicy`. Policies
expire after 24 hours (RFC 9309 §2.4).

Interpreting a fetch is pure (:func:`robots_from_fetch`); the fetching itself
is a function handed in, so this module does no I/O of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from yarl import URL

from .decision import Denial, Reason
from .robots import MAX_ROBOTS_BYTES, RobotsPolicy

CACHE_SECONDS = 24 * 3600

# robots.txt fetch failures that say nothing about the site's wishes because
# no connection to the host was ever made: the URL fails with the same reason
# (it could not be fetched either), instead of being blamed on an opt-out.
NOT_REACHED = frozenset({Reason.BLOCKED_ADDRESS, Reason.DNS_ERROR})


class FetchOutcome(Protocol):
    """What the fetcher returns (net.client.SmallFetch has this shape)."""

    http_status: int | None
    body: bytes
    error: Denial | None


@dataclass(frozen=True, slots=True)
class OriginFile:
    """The snapshot of one fetched origin file: a row of origins.parquet."""

    origin: str
    kind: str  # "robots.txt"
    url: str
    http_status: int | None
    outcome: str  # "parsed", "absent" (4xx: no restrictions) or "unreachable"
    error: str | None
    fetched_at: datetime
    size: int
    sha256: str | None

    def to_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    origin: str
    robots: RobotsPolicy | None  # None when robots.txt was unreachable
    robots_file: OriginFile
    loaded_at: float  # monotonic seconds, for expiry
    failure: Denial | None = None  # why the robots.txt request failed, if it did


def origin_of(url: URL) -> str:
    """``scheme://host:port`` with the port always spelled out."""
    return f"{url.scheme}://{url.host}:{url.port}"


def robots_from_fetch(origin: str, url: str, fetched: FetchOutcome) -> OriginPolicy:
    """Read a robots.txt fetch per RFC 9309 §2.3.1 and ARCHITECTURE.md §6.

    2xx → parse; 4xx but 429 → no restrictions; 429, 5xx, network errors and
    too many redirects → unreachable, which means "disallow everything".
    """
    status = fetched.http_status
    error: str | None = None
    robots: RobotsPolicy | None
    if fetched.error is not None:
        outcome, robots, error = "unreachable", None, fetched.error.evidence
    elif status is not None and 200 <= status < 300:
        outcome, robots = "parsed", RobotsPolicy.parse(fetched.body[:MAX_ROBOTS_BYTES])
    elif status is not None and 400 <= status < 500 and status != 429:
        outcome, robots = "absent", RobotsPolicy.allow_all()
    else:
        outcome, robots, error = "unreachable", None, f"HTTP {status}"
    body = fetched.body if outcome == "parsed" else b""
    record = OriginFile(
        origin=origin, kind="robots.txt", url=url, http_status=status, outcome=outcome,
        error=error, fetched_at=datetime.now(timezone.utc), size=len(body),
        sha256=hashlib.sha256(body).hexdigest() if outcome == "parsed" else None)
    return OriginPolicy(origin, robots, record, time.monotonic(), fetched.error)


def check_robots(policy: OriginPolicy, url: URL, token: str) -> Denial | None:
    """A denial if robots.txt forbids ``url`` to ``token`` (or could not be read)."""
    record = policy.robots_file
    if policy.failure is not None and policy.failure.reason in NOT_REACHED:
        return Denial(policy.failure.reason, f"{policy.failure.evidence} (while fetching "
                      f"{record.url})")
    if policy.robots is None:
        return Denial(Reason.ROBOTS_UNREACHABLE,
                      f"{record.url} could not be fetched ({record.error}); "
                      "RFC 9309 §2.3.1.4: assume complete disallow")
    verdict = policy.robots.check(str(url), token)
    if verdict.allowed:
        return None
    digest = f", sha256 {record.sha256[:12]}…" if record.sha256 else ""
    return Denial(Reason.ROBOTS_DISALLOWED,
                  f"{record.url} (fetched {record.fetched_at:%Y-%m-%d %H:%M} UTC{digest}) "
                  f"disallows {url.raw_path_qs} for user-agent {verdict.group}: "
                  f"rule `{verdict.rule}` on line {verdict.line}")


def check_opt_in(policy: OriginPolicy, token: str) -> Denial | None:
    """For ``--consent opt-in``: deny unless the origin gave explicit permission.

    The permission signal read so far is a robots.txt group that names our
    token (the site has spoken to us directly); its Allow/Disallow rules are
    applied by :func:`check_robots`.
    """
    if policy.robots is not None and policy.robots.names_token(token):
        return None
    return Denial(Reason.NO_OPT_IN,
                  f"--consent opt-in: {policy.robots_file.url} has no group for user-agent "
                  f"{token}, and no other permission signal was found")


Fetcher = Callable[[URL], Awaitable[FetchOutcome]]


class OriginPolicies:
    """Single-flight, cached origin policies for one event loop.

    ``cache`` may outlive this object (a worker process keeps one across
    shards); in-flight fetches are per instance, since they belong to a loop.
    """

    def __init__(self, fetch: Fetcher, cache: MutableMapping[str, OriginPolicy] | None = None,
                 max_age: float = CACHE_SECONDS) -> None:
        self._fetch = fetch
        self._cache: MutableMapping[str, OriginPolicy] = {} if cache is None else cache
        self._inflight: dict[str, asyncio.Future[OriginPolicy]] = {}
        self._max_age = max_age
        # The origin files behind every decision this instance made (fetched or
        # cached), so each run's origins.parquet names all the files it relied on.
        self.used: dict[str, OriginFile] = {}

    async def get(self, url: URL) -> OriginPolicy:
        origin = origin_of(url)
        policy = self._cache.get(origin)
        if policy is None or time.monotonic() - policy.loaded_at >= self._max_age:
            pending = self._inflight.get(origin)
            if pending is None:
                pending = asyncio.ensure_future(self._load(url, origin))
                self._inflight[origin] = pending
            policy = await asyncio.shield(pending)
        self.used.setdefault(origin, policy.robots_file)
        return policy

    async def _load(self, url: URL, origin: str) -> OriginPolicy:
        try:
            robots_url = url.with_path("/robots.txt").with_query(None).with_fragment(None)
            fetched = await self._fetch(robots_url)
            policy = robots_from_fetch(origin, str(robots_url), fetched)
            self._cache[origin] = policy
            return policy
        finally:
            self._inflight.pop(origin, None)
