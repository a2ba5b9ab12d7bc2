"""Politeness: per-host limits, gaps, backoff, a circuit breaker, and fair scheduling.

Two pieces share one per-host state (:class:`HostSlots`):

* The client takes a **slot** around every request (``async with
  slots.slot(host)``): at most ``per_host`` requests to a host at once, and
  at least the host's gap between request starts. The gap is the larger of
  ``--min-host-delay`` and robots.txt ``Crawl-delay``.
* Every attempt's outcome is **reported**. A 429, a 5xx or a network failure
  backs the host off exponentially, with jitter, or for ``Retry-After`` when
  that is longer. An error never shortens the delay. After
  ``max_failures`` failures in a row, or once a host's failures (two at
  least) and the backoff they earned would span its budget without a
  success in between, the host is **given up** for the run: one slow host
  cannot hold a shard, nor idle it waiting out a long backoff. The span
  starts when the first failed request started (a timeout's wait counts).
  The budget is ``failing_budget`` for a host that has had a success in
  this run, and the much smaller ``unproven_budget`` for one that has not:
  a host that fails every request from the start is given up in seconds.
  Only a success ends a run of failures; an answer that is not one (a 404,
  a refusal by header) neither counts nor resets it. The client also gives
  a host up (:meth:`HostSlots.give_up`) when it asks, by ``Retry-After``,
  for a longer wait than we make.

:class:`HostScheduler` hands rows to the shard's workers so that a worker
is only given a row whose host has a free slot and is not backing off.
Picks alternate between the host with the most rows queued (big hosts start
early) and round robin (the long tail keeps flowing). A slow or
rate-limited host holds at most ``per_host`` workers, and requests to the
other hosts keep flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

BACKOFF_BASE = 1.0  # seconds of host backoff after the first failure; doubles after each
BACKOFF_CAP = 300.0  # the longest backoff we impose on ourselves
_SWEEP_MIN = 1024  # hosts remembered before idle ones are first swept
FAILING_BUDGET = 60.0  # seconds of failures and backoff without a success before a host is given up
UNPROVEN_BUDGET = 10.0  # the same, for a host that has had no success in this run
PROVEN_MEMORY = 65_536  # hosts remembered as having had a success (beyond: unproven)


@dataclass(slots=True)
class _Host:
    semaphore: asyncio.Semaphore
    delay: float = 0.0  # minimum gap between request starts; only ever grows
    last_start: float = -1e18
    blocked_until: float = 0.0  # backoff after errors; only ever moves later
    failures: int = 0  # in a row
    failing_since: float = 0.0  # when the first of those failed requests started
    given_up: str | None = None  # why, once the circuit breaker opened
    last_failure: object = None  # the outcome of the last failed attempt
    users: int = 0
    gap_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    released: asyncio.Event = field(default_factory=asyncio.Event)  # set once given up

    def ready_at(self) -> float:
        """When the next request may start (ignoring the concurrency limit)."""
        return max(self.last_start + self.delay, self.blocked_until)

    def idle(self, now: float) -> bool:
        """Nothing to remember: no users, no failures, no backoff under way, not
        given up, and the gap since the last request start has passed (the delay
        itself is set again from the origin policy before every request)."""
        return self.users == 0 and self.failures == 0 and self.given_up is None \
            and self.blocked_until <= now and self.last_start + self.delay <= now


class HostSlots:
    """Per-host politeness state; ``async with slots.slot(host):`` around each request."""

    def __init__(self, per_host: int, *, min_delay: float = 0.0, max_failures: int = 0,
                 backoff_base: float = BACKOFF_BASE, clock: Callable[[], float] | None = None,
                 jitter: Callable[[float], float] | None = None,
                 failing_budget: float = FAILING_BUDGET,
                 unproven_budget: float = UNPROVEN_BUDGET) -> None:
        self._per_host = per_host
        self._min_delay = min_delay
        self._max_failures = max_failures  # 0: never give a host up
        self._failing_budget = failing_budget  # 0: no time budget
        self._unproven_budget = unproven_budget  # 0: no time budget before a success
        self._proven: set[str] = set()  # hosts with a success in this run (bounded)
        self._backoff_base = backoff_base
        self._clock = clock
        self._jitter = jitter or (lambda span: random.uniform(0, span))
        self._hosts: dict[str, _Host] = {}
        self._sweep_at = _SWEEP_MIN  # hosts remembered when idle ones are next swept
        self.changed = asyncio.Event()  # set whenever a host may have become ready

    def __len__(self) -> int:
        return len(self._hosts)

    def now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    def _get(self, host: str) -> _Host:
        state = self._hosts.get(host)
        if state is None:
            if len(self._hosts) >= self._sweep_at:
                self.sweep()
            state = self._hosts[host] = _Host(asyncio.Semaphore(self._per_host),
                                              delay=self._min_delay)
        return state

    def _forget_if_idle(self, host: str) -> None:
        state = self._hosts.get(host)
        if state is not None and state.idle(self.now()):
            del self._hosts[host]

    def sweep(self) -> int:
        """Forget every idle host (Scrapy's ``_slot_gc``); returns how many.

        Run when the table has doubled since the last sweep, so its cost is
        spread over the hosts added and the table holds about twice the hosts
        whose state still matters: in use, backing off, given up, or inside
        their gap.
        """
        now = self.now()
        idle = [host for host, state in self._hosts.items() if state.idle(now)]
        for host in idle:
            del self._hosts[host]
        self._sweep_at = max(_SWEEP_MIN, 2 * len(self._hosts))
        return len(idle)

    # -- what the scheduler asks ---------------------------------------------------------
    def ready_at(self, host: str) -> float:
        state = self._hosts.get(host)
        return state.ready_at() if state else 0.0

    def given_up(self, host: str) -> str | None:
        state = self._hosts.get(host)
        return state.given_up if state else None

    def backing_off(self, wanted: Callable[[str], bool]) -> tuple[int, float | None]:
        """Hosts waiting out a backoff, not given up, with a request waiting for its
        slot or ``wanted`` (rows queued); and seconds until the soonest may be tried.

        One pass over the remembered hosts (bounded by :meth:`sweep`): call it
        now and then, not per request.
        """
        now, count, soonest = self.now(), 0, None
        for host, state in self._hosts.items():
            if state.blocked_until > now and state.given_up is None \
                    and (state.users or wanted(host)):
                count += 1
                wait = state.blocked_until - now
                soonest = wait if soonest is None else min(soonest, wait)
        return count, soonest

    def set_delay(self, host: str, seconds: float) -> None:
        """Raise a host's minimum gap (robots.txt Crawl-delay); never lowers it."""
        if seconds > 0:
            state = self._get(host)
            state.delay = max(state.delay, seconds)

    # -- what the client does --------------------------------------------------------------
    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        state = self._get(host)
        state.users += 1
        try:
            async with state.semaphore:
                async with state.gap_lock:  # request starts are spaced one at a time
                    await self._wait_ready(state)
                    state.last_start = self.now()
                yield
        finally:
            state.users -= 1
            self.changed.set()
            self._forget_if_idle(host)

    async def _wait_ready(self, state: _Host) -> None:
        """Wait until the host may be requested, or until it is given up (the caller
        then sends nothing). A failure reported meanwhile that moves the host's block
        later is kept to: never sooner than the backoff. Bounded: each round waits for
        a block that only a new failure report can move."""
        target = state.ready_at()
        while (wait := target - self.now()) > 0 and state.given_up is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await state.released.wait()
            if state.ready_at() <= target:
                return
            target = state.ready_at()

    def failures(self, host: str) -> int:
        """The host's failed attempts since its last success."""
        state = self._hosts.get(host)
        return state.failures if state else 0

    def last_failure(self, host: str) -> object:
        state = self._hosts.get(host)
        return state.last_failure if state else None

    def report(self, host: str, *, ok: bool, retry_after: float | None = None,
               evidence: str = "", outcome: object = None,
               started: float | None = None) -> float:
        """Record an attempt's outcome; returns the host's backoff in seconds (0 if none).

        ``started`` is when the attempt's request started (on :meth:`now`'s
        clock); without it, now.
        """
        state = self._get(host)
        if ok:
            state.failures = 0
            if len(self._proven) < PROVEN_MEMORY:
                self._proven.add(host)
            self._forget_if_idle(host)
            return 0.0
        state.failures += 1
        if state.failures == 1:
            state.failing_since = self.now() if started is None else min(self.now(), started)
        state.last_failure = outcome
        doublings = min(state.failures - 1, 32)  # 2**32 s is past any cap
        backoff: float = min(BACKOFF_CAP, self._backoff_base * 2.0 ** doublings)
        backoff = min(BACKOFF_CAP, backoff + self._jitter(backoff / 2))
        if retry_after is not None:
            backoff = max(backoff, retry_after)
        state.blocked_until = max(state.blocked_until, self.now() + backoff)
        if state.given_up is None:
            state.given_up = self._give_up(host, state, evidence)
            if state.given_up is not None:
                state.released.set()
        self.changed.set()
        return backoff

    def give_up(self, host: str, why: str) -> bool:
        """Give ``host`` up for the run, for ``why``, unless the breaker is off
        (``max_failures`` 0) or it was given up already; whether it was, now."""
        state = self._get(host)
        if self._max_failures and state.given_up is None:
            state.given_up = why
            state.released.set()
            self.changed.set()
        return state.given_up is not None

    def _give_up(self, host: str, state: _Host, evidence: str) -> str | None:
        """Why the host is given up after this failure, or None (the breaker stays shut)."""
        if not self._max_failures:
            return None
        if state.failures >= self._max_failures:
            return (f"{host} failed {state.failures} times in a row (last: {evidence}); "
                    f"given up for this run")
        proven = host in self._proven
        budget = self._failing_budget if proven else self._unproven_budget
        span = state.blocked_until - state.failing_since
        if budget and state.failures >= 2 and span >= budget:
            failing = self.now() - state.failing_since
            whose = "" if proven else " of a host with no success in this run"
            return (f"{host} failed {state.failures} times over {failing:.0f} s without a "
                    f"success (last: {evidence}), and its backoff would pass the "
                    f"{budget:g} s budget{whose}; given up for this run")
        return None


class HostLoad:
    """Rows in flight per host, shared by the schedulers of the shards one loop runs at once.

    Each shard has its own :class:`HostScheduler`; when two overlap (a draining
    shard and the next one) they share one ``HostLoad``, so ``per_host`` caps a
    host's rows in flight across both, and a host one scheduler found full is
    offered to it again when any of them finishes a row of that host.
    """

    def __init__(self) -> None:
        self._inflight: dict[str, int] = {}
        self._waiting: dict[str, list[Callable[[str], None]]] = {}  # host full: whom to tell

    def inflight(self, host: str) -> int:
        return self._inflight.get(host, 0)

    def take(self, host: str) -> None:
        self._inflight[host] = self._inflight.get(host, 0) + 1

    def wait(self, host: str, wake: Callable[[str], None]) -> None:
        """Call ``wake(host)`` once, when a row of ``host`` is next released."""
        self._waiting.setdefault(host, []).append(wake)

    def release(self, host: str) -> None:
        left = self._inflight[host] - 1
        if left:
            self._inflight[host] = left
        else:
            del self._inflight[host]
        for wake in self._waiting.pop(host, ()):
            wake(host)


class HostScheduler(Generic[T]):
    """Politeness-aware hand-out of work items grouped by host: big hosts early, tail flowing.

    ``next()`` returns ``(host, item)`` for a host that has a free slot and is
    not waiting out a gap or a backoff. It returns None when every item has
    been handed out. Call ``done(host)`` when an item is finished. Items of a
    host that was given up are handed out at once, for the caller to record
    without a request.

    Picks alternate between two orders over the hosts that may be ready:

    * **most queued first**: the host with the most items still queued. A big
      host's rows are serial work (at most ``per_host`` at a time), so its
      slots are kept busy from the start instead of waiting a turn behind
      every one-row host, and it is not left alone at the end of a shard.
    * **round robin**: hosts take turns in the order they became ready, so
      the long tail keeps flowing whatever the big hosts hold.

    The in-flight limit still caps every host at ``per_host`` workers, across
    every scheduler sharing ``load`` (the shards one loop runs at once).
    """

    def __init__(self, slots: HostSlots, per_host: int, load: HostLoad | None = None) -> None:
        self._slots = slots
        self._per_host = per_host
        self._load = load if load is not None else HostLoad()
        self._queues: dict[str, deque[T]] = {}
        self._inflight: dict[str, int] = {}  # this scheduler's own rows in flight
        # A host that may be ready sits in both orders under one token; an entry
        # whose token is no longer the host's (picked through the other order) is stale.
        self._token: dict[str, int] = {}
        self._tokens = 0
        self._ring: deque[tuple[str, int]] = deque()  # round robin
        self._biggest: list[tuple[int, int, str]] = []  # (-queued, token, host)
        self._biggest_turn = True
        self._timed: list[tuple[float, str]] = []  # (ready time, host): waiting out a gap
        self._full: set[str] = set()  # hosts at their concurrency limit
        self.pending = 0

    def add(self, host: str, item: T) -> None:
        queue = self._queues.setdefault(host, deque())
        self._inflight.setdefault(host, 0)
        queue.append(item)
        self.pending += 1
        token = self._token.get(host)
        if token is not None:  # a candidate already: rank it by its new size too
            heapq.heappush(self._biggest, (-len(queue), token, host))
        elif len(queue) == 1:  # new or drained: the host becomes a candidate again
            self._offer(host)

    def _offer(self, host: str) -> None:
        """Make a host with queued items a candidate in both orders, once."""
        if host in self._token:
            return
        self._tokens += 1
        token = self._token[host] = self._tokens
        self._ring.append((host, token))
        heapq.heappush(self._biggest, (-len(self._queues.get(host) or ()), token, host))

    async def next(self) -> tuple[str, T] | None:
        while True:
            picked = self.pick()
            if picked is not None:
                return picked
            if self.pending == 0:
                return None
            wake = self.wake_at()
            timeout = None if wake is None else max(0.0, wake - self._slots.now())
            self._slots.changed.clear()
            try:
                await asyncio.wait_for(self._slots.changed.wait(), timeout)
            except TimeoutError:
                pass

    def wake_at(self) -> float | None:
        """When a host now waiting out a gap or backoff may be ready (None: none waits)."""
        return self._timed[0][0] if self._timed else None

    def done(self, host: str) -> None:
        self._inflight[host] -= 1
        self._load.release(host)  # offers the host again to every scheduler it was full for
        self._drop_if_finished(host)
        self._slots.changed.set()

    def _unfull(self, host: str) -> None:
        """A row of ``host`` was released (here or by a scheduler sharing the load)."""
        if host in self._full:
            self._full.discard(host)
            self._offer(host)

    def _drop_if_finished(self, host: str) -> None:
        """Forget a host with nothing queued and nothing in flight."""
        if not self._queues.get(host) and not self._inflight.get(host) \
                and host not in self._full:
            self._queues.pop(host, None)
            self._inflight.pop(host, None)

    def __len__(self) -> int:
        """Hosts with work queued or in flight."""
        return len(self._queues)

    def queued(self, host: str) -> bool:
        """Whether ``host`` has items not yet handed out."""
        return bool(self._queues.get(host))

    def _from_ring(self) -> str | None:
        while self._ring:
            host, token = self._ring.popleft()
            if self._token.get(host) == token:
                del self._token[host]
                return host
        return None

    def _from_biggest(self) -> str | None:
        # A host's entries share its token; the first valid one popped is its largest.
        while self._biggest:
            _, token, host = heapq.heappop(self._biggest)
            if self._token.get(host) == token:
                del self._token[host]
                return host
        return None

    def _candidate(self) -> str | None:
        """The next candidate host, alternating between the two orders."""
        self._biggest_turn = not self._biggest_turn
        first, second = (self._from_biggest, self._from_ring) if self._biggest_turn \
            else (self._from_ring, self._from_biggest)
        host = first()
        return host if host is not None else second()  # "" is a host: rows without one

    def _wake_timed(self, now: float) -> None:
        while self._timed and self._timed[0][0] <= now:
            self._offer(heapq.heappop(self._timed)[1])
        if any(self._slots.given_up(host) for _, host in self._timed):
            # A host given up while it waited out a backoff: its rows go now.
            waiting, self._timed = self._timed, []
            for ready, host in waiting:
                if self._slots.given_up(host):
                    self._offer(host)
                else:
                    heapq.heappush(self._timed, (ready, host))

    def pick(self) -> tuple[str, T] | None:
        """A ``(host, item)`` that may go now, or None; never waits."""
        now = self._slots.now()
        self._wake_timed(now)
        while (host := self._candidate()) is not None:  # each candidate is taken once
            queue = self._queues.get(host)
            if not queue:
                continue  # emptied (or finished and forgotten): no longer a candidate
            if self._slots.given_up(host) is None:
                if self._load.inflight(host) >= self._per_host:
                    self._full.add(host)
                    self._load.wait(host, self._unfull)
                    continue
                ready = self._slots.ready_at(host)
                if ready > now:
                    heapq.heappush(self._timed, (ready, host))
                    continue
            item = queue.popleft()
            self._inflight[host] += 1
            self._load.take(host)
            self.pending -= 1
            if queue:
                self._offer(host)
            return host, item
        return None
