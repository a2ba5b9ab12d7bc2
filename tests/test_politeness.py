"""Politeness: per-host slots, gaps, backoff, the circuit breaker, fair scheduling.

No network: ``HostSlots`` and ``HostScheduler`` are driven directly, and the
``HttpClient`` helpers (``is_transient``, ``_report``, ``given_up``) are fed
hand-made outcomes. Every scenario coroutine runs under ``asyncio.wait_for``
so that no test can hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from consentfetch.consent.decision import Denial, Reason
from consentfetch.net.client import Fetched, HttpClient, parse_retry_after
from consentfetch.net.politeness import BACKOFF_CAP, HostScheduler, HostSlots

R = TypeVar("R")

SCENARIO_TIMEOUT = 5.0
EPS = 0.005  # slack for the loop clock when comparing measured gaps
NOW = datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC)


def no_jitter(span: float) -> float:
    return 0.0


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def run(factory: Callable[[], Awaitable[R]], timeout: float = SCENARIO_TIMEOUT) -> R:
    """Run a scenario coroutine in a fresh loop, bounded in time."""
    async def bounded() -> R:
        return await asyncio.wait_for(factory(), timeout)
    return asyncio.run(bounded())


def loop_time() -> float:
    return asyncio.get_running_loop().time()


# -- parse_retry_after -----------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    # delay-seconds
    ("0", 0.0),
    ("120", 120.0),
    (" 5 ", 5.0),
    ("007", 7.0),
    # HTTP-dates, one minute after NOW, in the three forms RFC 9110 §5.6.7 accepts
    ("Mon, 01 Jan 2024 00:01:00 GMT", 60.0),  # IMF-fixdate
    ("Monday, 01-Jan-24 00:01:00 GMT", 60.0),  # obsolete RFC 850
    ("Mon Jan  1 00:01:00 2024", 60.0),  # obsolete asctime
    ("Tue, 02 Jan 2024 00:00:00 GMT", 86400.0),
    ("Mon, 01 Jan 2024 00:00:00 GMT", 0.0),  # exactly now
    # dates in the past: no wait
    ("Sun, 31 Dec 2023 23:59:00 GMT", 0.0),
    ("Sunday, 31-Dec-23 00:00:00 GMT", 0.0),
    ("Sun Dec 31 00:00:00 2023", 0.0),
    # garbage, empty, absent, negative
    ("", None),
    ("   ", None),
    (None, None),
    ("soon", None),
    ("-5", None),
    ("1.5", None),
    ("1e3", None),
    ("0x10", None),
    ("Mon, 32 Jan 2024 00:00:00 GMT", None),
    ("Mon, 01 Jan 2024 25:00:00 GMT", None),
])
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_parse_retry_after_without_now_uses_the_current_time() -> None:
    assert parse_retry_after("Mon, 01 Jan 2001 00:00:00 GMT") == 0.0  # long past
    far = parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT")
    assert far is not None and far > 365 * 86400


@pytest.mark.parametrize("value", ["²", "1²"])
def test_parse_retry_after_non_ascii_digits_are_garbage(value: str) -> None:
    assert parse_retry_after(value, NOW) is None


# -- HostSlots.slot: concurrency, gaps, clean-up ----------------------------------------

@pytest.mark.parametrize("per_host", [1, 2, 3, 5])
def test_slot_never_exceeds_per_host(per_host: int) -> None:
    async def scenario() -> tuple[int, int]:
        slots = HostSlots(per_host)
        current = peak = done = 0

        async def request() -> None:
            nonlocal current, peak, done
            async with slots.slot("h"):
                current += 1
                peak = max(peak, current)
                await asyncio.sleep(0.005)
                current -= 1
            done += 1

        await asyncio.gather(*(request() for _ in range(20)))
        return peak, done

    peak, done = run(scenario)
    assert done == 20
    assert peak == per_host  # never more, and the limit is actually used


def test_slot_limit_is_per_host() -> None:
    async def scenario() -> dict[str, int]:
        slots = HostSlots(2)
        current = {"a": 0, "b": 0, "c": 0}
        peak = dict(current)

        async def request(host: str) -> None:
            async with slots.slot(host):
                current[host] += 1
                peak[host] = max(peak[host], current[host])
                await asyncio.sleep(0.005)
                current[host] -= 1

        await asyncio.gather(*(request(h) for h in "abc" for _ in range(10)))
        return peak

    assert run(scenario) == {"a": 2, "b": 2, "c": 2}


def test_slot_hosts_are_independent() -> None:
    async def scenario() -> None:
        slots = HostSlots(1)
        holding = asyncio.Event()
        release = asyncio.Event()

        async def hold_a() -> None:
            async with slots.slot("a"):
                holding.set()
                await release.wait()

        holder = asyncio.create_task(hold_a())
        await holding.wait()

        async def enter(host: str) -> None:
            async with slots.slot(host):
                pass

        await asyncio.wait_for(enter("b"), 0.5)  # another host: not held up
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(enter("a"), 0.05)  # the same host: full
        release.set()
        await holder
        await asyncio.wait_for(enter("a"), 0.5)

    run(scenario)


@pytest.mark.parametrize("per_host", [1, 3])
def test_slot_spaces_request_starts_by_the_delay(per_host: int) -> None:
    async def scenario() -> list[float]:
        slots = HostSlots(per_host)
        slots.set_delay("h", 0.05)
        starts: list[float] = []

        async def request() -> None:
            async with slots.slot("h"):
                starts.append(loop_time())

        await asyncio.gather(*(request() for _ in range(5)))
        return starts

    starts = run(scenario)
    assert len(starts) == 5
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert all(gap >= 0.05 - EPS for gap in gaps), gaps


def test_slot_gap_does_not_delay_other_hosts() -> None:
    async def scenario() -> float:
        slots = HostSlots(1)
        slots.set_delay("slow", 1.0)
        async with slots.slot("slow"):
            pass
        started = loop_time()
        async with slots.slot("fast"):
            pass
        async with slots.slot("fast"):
            pass
        return loop_time() - started

    assert run(scenario) < 0.5


def test_set_delay_never_lowers() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        slots = HostSlots(1, clock=clock)
        slots.set_delay("h", 0.2)
        slots.set_delay("h", 0.05)
        slots.set_delay("h", 0)
        slots.set_delay("h", -1)
        async with slots.slot("h"):
            pass
        assert slots.ready_at("h") == pytest.approx(clock() + 0.2)
        slots.set_delay("h", 0.5)  # raising works
        assert slots.ready_at("h") == pytest.approx(clock() + 0.5)

    run(scenario)


@pytest.mark.parametrize("seconds", [0, 0.0, -1.0])
def test_set_delay_of_nothing_creates_no_state(seconds: float) -> None:
    slots = HostSlots(1)
    slots.set_delay("h", seconds)
    assert len(slots) == 0
    assert slots.ready_at("h") == 0.0


def test_min_delay_applies_to_every_host() -> None:
    async def scenario() -> list[float]:
        clock = FakeClock()
        slots = HostSlots(2, min_delay=0.05, clock=clock)
        slots.set_delay("b", 0.01)  # lower than the minimum: ignored
        for host in ("a", "b", "c"):
            async with slots.slot(host):
                pass
            assert slots.ready_at(host) == pytest.approx(clock() + 0.05)
        assert len(slots) == 3  # a host with a gap is remembered

        real = HostSlots(2, min_delay=0.05)
        starts: list[float] = []
        for _ in range(3):
            async with real.slot("d"):
                starts.append(loop_time())
        return starts

    starts = run(scenario)
    assert all(b - a >= 0.05 - EPS for a, b in zip(starts, starts[1:], strict=False)), starts


def test_idle_hosts_are_forgotten() -> None:
    async def scenario() -> None:
        slots = HostSlots(2)
        async with slots.slot("h"):
            assert len(slots) == 1  # in use
            async with slots.slot("h"):
                assert len(slots) == 1
            assert len(slots) == 1  # still one user
        assert len(slots) == 0
        await asyncio.gather(*(_use(slots, h) for h in "abcdef" for _ in range(3)))
        assert len(slots) == 0

    run(scenario)


async def _use(slots: HostSlots, host: str) -> None:
    async with slots.slot(host):
        await asyncio.sleep(0)


@pytest.mark.parametrize("remember", ["failure", "delay", "given_up"])
def test_hosts_with_something_to_remember_are_kept(remember: str) -> None:
    async def scenario() -> None:
        slots = HostSlots(1, max_failures=1 if remember == "given_up" else 0,
                          backoff_base=0.001, jitter=no_jitter)
        if remember == "delay":
            slots.set_delay("h", 0.001)
        else:
            slots.report("h", ok=False, evidence="boom")
        async with slots.slot("h"):
            pass
        assert len(slots) == 1
        if remember == "given_up":
            slots.report("h", ok=True)  # success resets failures, not the breaker
            assert slots.given_up("h") is not None
            assert len(slots) == 1

    run(scenario)


def test_success_on_an_unknown_host_leaves_no_state() -> None:
    slots = HostSlots(1, clock=FakeClock())
    assert slots.report("h", ok=True) == 0.0
    assert len(slots) == 0
    assert slots.given_up("h") is None
    assert slots.last_failure("h") is None


# -- report(): backoff, Retry-After, circuit breaker --------------------------------------

@pytest.mark.parametrize("base", [0.5, 1.0, 3.0])
def test_backoff_doubles_per_consecutive_failure(base: float) -> None:
    clock = FakeClock()
    slots = HostSlots(1, backoff_base=base, clock=clock, jitter=no_jitter)
    for n in range(6):
        backoff = slots.report("h", ok=False)
        assert backoff == base * 2 ** n
        assert slots.ready_at("h") == pytest.approx(clock() + backoff)
        clock.advance(backoff)  # wait it out before the next attempt


def test_backoff_is_capped() -> None:
    clock = FakeClock()
    slots = HostSlots(1, backoff_base=1.0, clock=clock, jitter=no_jitter)
    got = [slots.report("h", ok=False) for _ in range(14)]
    assert got == [min(BACKOFF_CAP, 2.0 ** n) for n in range(14)]
    assert got[-1] == BACKOFF_CAP
    assert slots.ready_at("h") == clock() + BACKOFF_CAP


def test_jitter_is_added_within_half_the_backoff() -> None:
    clock = FakeClock()
    spans: list[float] = []

    def jitter(span: float) -> float:
        spans.append(span)
        return span  # the most jitter allowed

    slots = HostSlots(1, backoff_base=2.0, clock=clock, jitter=jitter)
    got = [slots.report("h", ok=False) for _ in range(3)]
    assert spans == [1.0, 2.0, 4.0]
    assert got == [3.0, 6.0, 12.0]
    assert slots.ready_at("h") == clock() + 12.0


def test_default_jitter_is_random_and_bounded() -> None:
    clock = FakeClock()
    got = set()
    for _ in range(20):
        slots = HostSlots(1, backoff_base=1.0, clock=clock)
        backoff = slots.report("h", ok=False)
        assert 1.0 <= backoff <= 1.5
        got.add(backoff)
    assert len(got) > 1


@pytest.mark.parametrize("failures_before,retry_after,expected", [
    (0, 10.0, 10.0),  # longer than the backoff: Retry-After wins
    (0, 0.5, 1.0),  # shorter: the backoff stands
    (0, 0.0, 1.0),
    (0, None, 1.0),
    (3, 5.0, 8.0),  # fourth failure: backoff 8 beats Retry-After 5
    (3, 9.0, 9.0),
    (0, 1000.0, 1000.0),  # a server may ask for more than our own cap
])
def test_retry_after_versus_backoff(failures_before: int, retry_after: float | None,
                                    expected: float) -> None:
    clock = FakeClock()
    slots = HostSlots(1, backoff_base=1.0, clock=clock, jitter=no_jitter)
    for _ in range(failures_before):
        slots.report("h", ok=False)
    assert slots.report("h", ok=False, retry_after=retry_after) == expected
    assert slots.ready_at("h") == clock() + expected


def test_a_later_error_never_shortens_the_block() -> None:
    clock = FakeClock()
    slots = HostSlots(1, backoff_base=1.0, clock=clock, jitter=no_jitter)
    slots.report("h", ok=False, retry_after=100.0)
    assert slots.ready_at("h") == 1100.0
    clock.advance(10)
    slots.report("h", ok=False, retry_after=1.0)  # backoff 2, Retry-After 1
    assert slots.ready_at("h") == 1100.0


def test_success_resets_the_failure_count() -> None:
    clock = FakeClock()
    slots = HostSlots(1, backoff_base=1.0, clock=clock, jitter=no_jitter)
    for _ in range(3):
        slots.report("h", ok=False)
    assert slots.report("h", ok=True) == 0.0
    assert slots.report("h", ok=False) == 1.0  # the count starts again


def test_success_never_moves_the_block_earlier_for_a_remembered_host() -> None:
    clock = FakeClock()
    slots = HostSlots(1, backoff_base=1.0, clock=clock, jitter=no_jitter)
    slots.set_delay("h", 0.01)  # a crawl delay keeps the host remembered
    slots.report("h", ok=False, retry_after=30.0)
    slots.report("h", ok=True)
    assert slots.ready_at("h") == 1030.0


def test_success_never_moves_the_block_earlier() -> None:
    clock = FakeClock()
    slots = HostSlots(2, backoff_base=1.0, clock=clock, jitter=no_jitter)
    slots.report("h", ok=False, retry_after=30.0)  # one request: 503, Retry-After 30
    assert slots.ready_at("h") == 1030.0
    slots.report("h", ok=True)  # a concurrent request to the host succeeded
    assert slots.ready_at("h") == 1030.0


@pytest.mark.parametrize("max_failures", [1, 2, 5])
def test_circuit_breaker_gives_up_after_max_failures(max_failures: int) -> None:
    slots = HostSlots(1, max_failures=max_failures, clock=FakeClock(), jitter=no_jitter)
    for n in range(1, max_failures):
        slots.report("img.example", ok=False, evidence=f"error {n}")
        assert slots.given_up("img.example") is None
    slots.report("img.example", ok=False, evidence="HTTP 503 Service Unavailable")
    why = slots.given_up("img.example")
    assert why is not None
    assert "img.example" in why
    assert f"failed {max_failures} times in a row" in why
    assert "HTTP 503 Service Unavailable" in why
    slots.report("img.example", ok=False, evidence="later")  # the first reason stays
    assert slots.given_up("img.example") == why
    assert slots.given_up("other.example") is None


def test_circuit_breaker_counts_only_failures_in_a_row() -> None:
    slots = HostSlots(1, max_failures=3, clock=FakeClock(), jitter=no_jitter)
    slots.set_delay("h", 0.01)
    for _ in range(5):
        slots.report("h", ok=False)
        slots.report("h", ok=False)
        slots.report("h", ok=True)
    assert slots.given_up("h") is None


def test_a_host_failing_past_the_budget_is_given_up_before_max_failures() -> None:
    clock = FakeClock()
    slots = HostSlots(2, max_failures=8, clock=clock, jitter=no_jitter, failing_budget=60.0)
    slots.report("h", ok=True)  # the host had a success: the long budget applies
    slots.report("h", ok=False, evidence="timeout")  # t=0, backoff 1 s
    clock.advance(50.0)
    slots.report("h", ok=False, evidence="timeout")  # t=50, until 52
    clock.advance(5.0)
    slots.report("h", ok=False, evidence="timeout")  # t=55, until 59: within the budget
    assert slots.given_up("h") is None
    clock.advance(1.0)
    slots.report("h", ok=False, evidence="timeout")  # t=56, until 64: past it
    why = slots.given_up("h")
    assert why is not None and "failed 4 times over 56 s" in why and "60 s budget" in why


def backoff_total_until_given_up(slots: HostSlots, clock: FakeClock,
                                 attempt: float = 0.0) -> tuple[int, float]:
    """Fail one request at a time, each taking ``attempt`` seconds and starting when the
    host is ready, until the host is given up: (failures, seconds from first start)."""
    start = clock()
    for failures in range(1, 100):
        clock.t = max(clock.t, slots.ready_at("h"))
        began = clock()
        clock.advance(attempt)
        slots.report("h", ok=False, evidence="HTTP 503", started=began)
        if slots.given_up("h"):
            return failures, clock() - start
    raise AssertionError("never given up")


def test_a_host_without_a_success_is_given_up_within_the_small_budget() -> None:
    """Issue 15: a host that fails every request from the start costs seconds, not
    the 60 s budget of a host that has worked."""
    clock = FakeClock()
    slots = HostSlots(2, max_failures=8, clock=clock, jitter=no_jitter)
    failures, spent = backoff_total_until_given_up(slots, clock)
    assert (failures, spent) == (4, 7.0)  # 1 + 2 + 4 s of backoff; the 4th would pass 10 s
    why = slots.given_up("h")
    assert why is not None and "10 s budget of a host with no success in this run" in why


def test_a_host_with_a_success_keeps_the_long_budget() -> None:
    clock = FakeClock()
    slots = HostSlots(2, max_failures=8, clock=clock, jitter=no_jitter)
    slots.report("h", ok=True)
    slots.report("other", ok=True)  # remembered though its state is forgotten when idle
    assert len(slots) == 0
    failures, spent = backoff_total_until_given_up(slots, clock)
    assert (failures, spent) == (6, 31.0)  # 1 + ... + 16 s; the 6th would pass 60 s
    assert "no success" not in (slots.given_up("h") or "")


def test_a_timeout_counts_from_its_request_start() -> None:
    """Two 10 s timeouts of a host without a success pass its budget: the time the
    requests waited counts, not only the backoff after they were reported."""
    clock = FakeClock()
    slots = HostSlots(2, max_failures=8, clock=clock, jitter=no_jitter)
    failures, spent = backoff_total_until_given_up(slots, clock, attempt=10.0)
    assert (failures, spent) == (2, 21.0)


def test_backing_off_counts_hosts_with_work_waiting() -> None:
    """The progress line's summary: hosts in a backoff that rows wait for, soonest first."""
    clock = FakeClock()
    slots = HostSlots(2, max_failures=2, clock=clock, jitter=no_jitter)
    assert slots.backing_off(lambda host: True) == (0, None)
    slots.report("queued", ok=False, retry_after=30.0)  # rows still queued
    slots.report("idle", ok=False, retry_after=5.0)  # nothing left to fetch
    slots.report("dead", ok=False)
    slots.report("dead", ok=False)  # given up: its rows go without a wait
    assert slots.given_up("dead")
    assert slots.backing_off(lambda host: host != "idle") == (1, 30.0)
    assert slots.backing_off(lambda host: True) == (2, 5.0)
    clock.advance(6.0)
    assert slots.backing_off(lambda host: True) == (1, 24.0)


def test_backing_off_counts_a_host_a_request_waits_to_retry() -> None:
    async def scenario() -> tuple[int, float | None]:
        slots = HostSlots(1, backoff_base=0.01, jitter=no_jitter)
        slots.report("h", ok=False, retry_after=0.5)

        async def retry() -> None:
            async with slots.slot("h"):
                pass

        waiting = asyncio.create_task(retry())
        await asyncio.sleep(0.05)
        seen = slots.backing_off(lambda host: False)  # nothing queued: the retry counts
        await waiting
        return seen

    hosts, soonest = run(scenario)
    assert hosts == 1 and soonest is not None and 0.3 < soonest <= 0.5


def test_a_request_waiting_out_a_backoff_waits_for_one_that_grew_meanwhile() -> None:
    """Never sooner than the backoff: a failure reported while a request waits for its
    slot moves the host's block later, and the waiting request keeps to it."""
    async def scenario() -> tuple[float, float]:
        slots = HostSlots(2, backoff_base=0.1, jitter=no_jitter)
        slots.report("h", ok=False)  # blocked for 0.1 s

        async def request() -> float:
            async with slots.slot("h"):
                return loop_time()

        waiting = asyncio.create_task(request())
        await asyncio.sleep(0.02)  # it waits out the 0.1 s
        slots.report("h", ok=False)  # a concurrent request failed: 0.2 s from now
        return await waiting, slots.ready_at("h")

    started, ready = run(scenario)
    assert started >= ready - EPS


def test_a_host_given_up_releases_the_requests_waiting_out_its_backoff() -> None:
    async def scenario() -> str | None:
        slots = HostSlots(2, max_failures=2, backoff_base=30.0, jitter=no_jitter)
        slots.report("h", ok=False)  # blocked for 30 s

        async def request() -> str | None:
            async with slots.slot("h"):
                return slots.given_up("h")  # the caller sees it and sends nothing

        waiting = asyncio.create_task(request())
        await asyncio.sleep(0.02)
        slots.report("h", ok=False, evidence="HTTP 503")  # the breaker opens
        return await asyncio.wait_for(waiting, 1.0)

    why = run(scenario)
    assert why is not None and "failed 2 times" in why


def test_one_failure_alone_never_exhausts_the_budget() -> None:
    clock = FakeClock()
    slots = HostSlots(2, max_failures=8, clock=clock, jitter=no_jitter, failing_budget=1.0)
    slots.report("h", ok=False)
    clock.advance(1000.0)
    slots.report("h", ok=True)  # a success ends the run of failures
    slots.report("h", ok=False)
    assert slots.given_up("h") is None


def test_client_timeouts_between_404s_give_the_host_up() -> None:
    client = make_client(max_failures=3)
    for _ in range(3):
        client._report(URL_, Denial(Reason.TIMEOUT, "slow"))
        client._report(URL_, http(404))
    assert client.given_up(URL_) is not None


def test_max_failures_zero_never_gives_up() -> None:
    slots = HostSlots(1, max_failures=0, clock=FakeClock(), jitter=no_jitter)
    for _ in range(200):
        slots.report("h", ok=False, evidence="down")
    assert slots.given_up("h") is None
    assert slots.report("h", ok=False) == BACKOFF_CAP


def test_backoff_stays_capped_after_very_many_failures() -> None:
    slots = HostSlots(1, max_failures=0, clock=FakeClock(), jitter=no_jitter)
    for _ in range(1100):
        assert slots.report("h", ok=False) <= BACKOFF_CAP


def test_last_failure_returns_the_outcome_object() -> None:
    slots = HostSlots(1, clock=FakeClock(), jitter=no_jitter)
    assert slots.last_failure("h") is None
    first, second = object(), Denial(Reason.TIMEOUT, "slow")
    slots.report("h", ok=False, outcome=first)
    assert slots.last_failure("h") is first
    slots.report("h", ok=False, outcome=second)
    assert slots.last_failure("h") is second
    assert slots.last_failure("other") is None


def test_report_signals_a_change() -> None:
    slots = HostSlots(1, clock=FakeClock(), jitter=no_jitter)
    slots.changed.clear()
    slots.report("h", ok=False)
    assert slots.changed.is_set()


# -- HostScheduler ---------------------------------------------------------------------------

def test_scheduler_empty_returns_none() -> None:
    async def scenario() -> object:
        return await HostScheduler(HostSlots(1), 1).next()

    assert run(scenario, timeout=1) is None


def test_scheduler_pending_counts() -> None:
    async def scenario() -> list[int]:
        scheduler: HostScheduler[int] = HostScheduler(HostSlots(5), 5)
        counts = [scheduler.pending]
        for i in range(3):
            scheduler.add("a", i)
        for i in range(2):
            scheduler.add("b", i)
        counts.append(scheduler.pending)
        got = await scheduler.next()
        assert got is not None
        counts.append(scheduler.pending)
        scheduler.done(got[0])  # done does not change what is pending
        counts.append(scheduler.pending)
        while (got := await scheduler.next()) is not None:
            scheduler.done(got[0])
        counts.append(scheduler.pending)
        return counts

    assert run(scenario) == [0, 5, 4, 4, 0]


def test_scheduler_hands_out_each_item_once_in_host_order() -> None:
    async def scenario() -> list[tuple[str, int]]:
        scheduler: HostScheduler[int] = HostScheduler(HostSlots(1), 1)
        for host, n in (("a", 3), ("b", 2), ("c", 1)):
            for i in range(n):
                scheduler.add(host, i)
        out = []
        while (got := await scheduler.next()) is not None:
            out.append(got)
            scheduler.done(got[0])
        return out

    out = run(scenario)
    assert sorted(out) == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("c", 0)]
    for host in "abc":  # a host's items keep their order
        items = [i for h, i in out if h == host]
        assert items == sorted(items)


@pytest.mark.parametrize("b_first", [False, True])
def test_scheduler_round_robin_is_fair(b_first: bool) -> None:
    async def scenario() -> list[str]:
        scheduler: HostScheduler[int] = HostScheduler(HostSlots(1), 1)
        adds = [("a", 50), ("b", 3)]
        for host, n in (reversed(adds) if b_first else adds):
            for i in range(n):
                scheduler.add(host, i)
        order = []
        while (got := await scheduler.next()) is not None:
            order.append(got[0])
            scheduler.done(got[0])  # processed instantly
        return order

    order = run(scenario)
    assert len(order) == 53
    # Picks alternate between the biggest queue (a) and round robin (a, b):
    # the small host still gets every other round-robin turn.
    assert order[:7].count("b") == 3


def test_scheduler_hands_out_rows_without_a_host() -> None:
    """Host "" (rows that make no request) is a host like any other, though falsy."""
    async def scenario() -> list[str]:
        scheduler: HostScheduler[int] = HostScheduler(HostSlots(2), 2)
        for i in range(5):
            scheduler.add("", i)
        scheduler.add("a", 0)
        order = []
        while (got := await scheduler.next()) is not None:
            order.append(got[0])
            scheduler.done(got[0])
        return order

    assert sorted(run(scenario)) == ["", "", "", "", "", "a"]


def test_scheduler_keeps_a_big_hosts_slots_busy_from_the_start() -> None:
    """The big host was added last, behind 100 one-row hosts; it must not wait for them."""
    async def scenario() -> list[str]:
        scheduler: HostScheduler[int] = HostScheduler(HostSlots(2), 2)
        for i in range(100):
            scheduler.add(f"tail{i}", i)
        for i in range(30):
            scheduler.add("big", i)
        order = []
        for _ in range(4):  # tail rows are never finished: their workers stay busy
            got = await scheduler.next()
            assert got is not None
            order.append(got[0])
        for _ in range(10):  # a big row finishes: its slot is taken again within two picks
            scheduler.done("big")
            for _ in range(2):
                got = await scheduler.next()
                assert got is not None
                order.append(got[0])
        return order

    order = run(scenario)
    assert order[:4].count("big") == 2  # both slots taken within the first four picks
    assert order.count("big") == 2 + 10  # refilled each time, never above per_host
    assert len(set(order) - {"big"}) == 24 - 12  # while the tail keeps flowing


def test_scheduler_respects_the_per_host_in_flight_limit() -> None:
    async def scenario() -> tuple[dict[str, int], int]:
        per_host = 2
        scheduler: HostScheduler[int] = HostScheduler(HostSlots(per_host), per_host)
        for host in "abcd":
            for i in range(8):
                scheduler.add(host, i)
        inflight = dict.fromkeys("abcd", 0)
        peak = dict(inflight)
        handled = 0

        async def worker() -> None:
            nonlocal handled
            while (got := await scheduler.next()) is not None:
                host = got[0]
                inflight[host] += 1
                peak[host] = max(peak[host], inflight[host])
                await asyncio.sleep(0.01)
                inflight[host] -= 1
                handled += 1
                scheduler.done(host)

        await asyncio.gather(*(worker() for _ in range(12)))
        return peak, handled

    peak, handled = run(scenario)
    assert handled == 32
    assert peak == dict.fromkeys("abcd", 2)


def test_scheduler_waiting_worker_wakes_when_done_frees_a_slot() -> None:
    async def scenario() -> None:
        scheduler: HostScheduler[int] = HostScheduler(HostSlots(1), 1)
        scheduler.add("a", 1)
        scheduler.add("a", 2)
        assert await scheduler.next() == ("a", 1)
        waiter = asyncio.create_task(scheduler.next())
        await asyncio.sleep(0.05)
        assert not waiter.done()  # host a is full
        scheduler.done("a")
        assert await asyncio.wait_for(waiter, 1) == ("a", 2)

    run(scenario)


def test_scheduler_add_after_drain_readds_the_host() -> None:
    async def scenario() -> None:
        scheduler: HostScheduler[int] = HostScheduler(HostSlots(1), 1)
        scheduler.add("a", 1)
        assert await scheduler.next() == ("a", 1)
        assert await scheduler.next() is None  # nothing pending
        scheduler.add("a", 2)  # drained, item still in flight
        waiter = asyncio.create_task(scheduler.next())
        await asyncio.sleep(0.02)
        assert not waiter.done()
        scheduler.done("a")
        assert await asyncio.wait_for(waiter, 1) == ("a", 2)
        scheduler.done("a")
        scheduler.add("a", 3)  # drained and idle
        assert await asyncio.wait_for(scheduler.next(), 1) == ("a", 3)
        assert scheduler.pending == 0

    run(scenario)


def test_scheduler_skips_a_backed_off_host_and_returns_to_it() -> None:
    async def scenario() -> tuple[list[str], float]:
        slots = HostSlots(1, backoff_base=0.01, jitter=no_jitter)
        scheduler: HostScheduler[int] = HostScheduler(slots, 1)
        started = loop_time()
        slots.report("blocked", ok=False, retry_after=0.1)
        for i in range(2):
            scheduler.add("blocked", i)
        for host in ("x", "y"):
            for i in range(3):
                scheduler.add(host, i)
        order: list[str] = []
        first_blocked_at = -1.0
        while (got := await scheduler.next()) is not None:
            if got[0] == "blocked" and first_blocked_at < 0:
                first_blocked_at = loop_time() - started
            order.append(got[0])
            scheduler.done(got[0])
        return order, first_blocked_at

    order, first_blocked_at = run(scenario)
    assert order[:6] == ["x", "y"] * 3  # served while "blocked" backs off
    assert sorted(order[6:]) == ["blocked", "blocked"]  # and then it is served
    assert 0.1 - EPS <= first_blocked_at < 1.0


def test_scheduler_honours_the_host_gap() -> None:
    async def scenario() -> list[float]:
        slots = HostSlots(2)
        slots.set_delay("h", 0.05)
        scheduler: HostScheduler[int] = HostScheduler(slots, 2)
        for i in range(3):
            scheduler.add("h", i)
        starts = []
        while (got := await scheduler.next()) is not None:
            async with slots.slot(got[0]):
                starts.append(loop_time())
            scheduler.done(got[0])
        return starts

    starts = run(scenario)
    assert len(starts) == 3
    assert all(b - a >= 0.05 - EPS for a, b in zip(starts, starts[1:], strict=False)), starts


def test_scheduler_hands_out_given_up_items_at_once() -> None:
    async def scenario() -> list[tuple[str, int] | None]:
        slots = HostSlots(1, max_failures=1, jitter=no_jitter)
        slots.report("dead", ok=False, retry_after=100.0, evidence="refused")
        assert slots.given_up("dead") is not None
        scheduler: HostScheduler[int] = HostScheduler(slots, 1)
        for i in range(3):
            scheduler.add("dead", i)
        # Despite the backoff, and beyond the per-host limit (no done()):
        return [await asyncio.wait_for(scheduler.next(), 0.5) for _ in range(3)]

    assert run(scenario) == [("dead", 0), ("dead", 1), ("dead", 2)]


def test_scheduler_hands_out_items_of_a_host_given_up_while_backing_off() -> None:
    async def scenario() -> tuple[str, int] | None:
        slots = HostSlots(2, max_failures=2, backoff_base=0.01, jitter=no_jitter)
        scheduler: HostScheduler[int] = HostScheduler(slots, 2)
        for i in range(3):
            scheduler.add("h", i)
        assert await scheduler.next() == ("h", 0)
        assert await scheduler.next() == ("h", 1)
        # Request 0 fails with Retry-After: 3 and finishes.
        slots.report("h", ok=False, retry_after=3.0, evidence="HTTP 503")
        scheduler.done("h")
        waiter = asyncio.create_task(scheduler.next())  # parks "h" until +3 s
        await asyncio.sleep(0.02)
        assert not waiter.done()
        # Request 1 fails too: the breaker opens.
        slots.report("h", ok=False, evidence="HTTP 503")
        assert slots.given_up("h") is not None
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), 0.5)
        finally:
            waiter.cancel()

    assert run(scenario) == ("h", 2)


def test_slow_host_does_not_stall_the_others() -> None:
    async def scenario() -> tuple[list[tuple[str, str, int]], int]:
        per_host = 2
        slots = HostSlots(per_host)
        scheduler: HostScheduler[int] = HostScheduler(slots, per_host)
        fast_hosts = [f"fast{n}" for n in range(10)]
        for i in range(4):
            scheduler.add("slow", i)
        for i in range(20):
            for host in fast_hosts:
                scheduler.add(host, i)
        events: list[tuple[str, str, int]] = []
        slow_inflight = slow_peak = 0

        async def worker() -> None:
            nonlocal slow_inflight, slow_peak
            while (got := await scheduler.next()) is not None:
                host, item = got
                try:
                    async with slots.slot(host):
                        events.append(("start", host, item))
                        if host == "slow":
                            slow_inflight += 1
                            slow_peak = max(slow_peak, slow_inflight)
                            await asyncio.sleep(0.3)
                            slow_inflight -= 1
                        else:
                            await asyncio.sleep(0)
                        events.append(("end", host, item))
                finally:
                    scheduler.done(host)

        await asyncio.gather(*(worker() for _ in range(8)))
        return events, slow_peak

    events, slow_peak = run(scenario)
    starts = [e for e in events if e[0] == "start"]
    assert len(starts) == 4 + 10 * 20
    assert slow_peak == 2
    slow_starts = [i for i, e in enumerate(events) if e[0] == "start" and e[1] == "slow"]
    fast_ends = [i for i, e in enumerate(events) if e[0] == "end" and e[1] != "slow"]
    assert len(fast_ends) == 200
    assert max(fast_ends) < slow_starts[2]


# -- HttpClient helpers (no network) -----------------------------------------------------

HOST = "img.example"
URL_ = URL(f"https://{HOST}/a.jpg")


def make_client(*, max_failures: int = 0, max_retry_after: float = 60.0,
                clock: FakeClock | None = None) -> HttpClient:
    slots = HostSlots(2, max_failures=max_failures, backoff_base=1.0,
                      clock=clock or FakeClock(), jitter=no_jitter)
    return HttpClient(user_agent="consentfetch-tests", timeout=1.0, max_bytes=1024,
                      max_redirects=2, retries=1, concurrency=2, slots=slots,
                      allow_private_networks=True, max_retry_after=max_retry_after)


def http(status: int, retry_after: float | None = None) -> Denial:
    return Denial(Reason.HTTP_ERROR, f"HTTP {status}", status, retry_after)


def fetched() -> Fetched:
    return Fetched(URL_, 200, CIMultiDictProxy(CIMultiDict()), b"img")


@pytest.mark.parametrize("outcome,expected", [
    (Denial(Reason.TIMEOUT, "slow"), True),
    (Denial(Reason.CONNECTION_ERROR, "reset"), True),
    (http(503, 5.0), True),
    (http(503, 60.0), True),  # exactly the limit
    (http(503, 3600.0), False),  # longer than we will wait
    (http(429), True),
    (http(429, 61.0), False),
    (http(500), True),
    (http(502), True),
    (http(404), False),
    (http(403), False),
    (Denial(Reason.DNS_ERROR, "no such host"), False),
    (Denial(Reason.TLS_ERROR, "bad cert"), False),
    (Denial(Reason.TOO_LARGE, "big", 200), False),
    (URL("https://img.example/next.jpg"), False),
    (None, False),
])
def test_client_is_transient(outcome: Any, expected: bool) -> None:
    assert make_client().is_transient(outcome) is expected


# After one failure on record, report the outcome and then one more failure: the
# backoff of that last failure tells what the outcome was reported as
# (failure: 3rd in a row = 4 s; success: count reset = 1 s; nothing: 2nd = 2 s).
AS_FAILURE, AS_OK, NOT_REPORTED = 4.0, 1.0, 2.0


@pytest.mark.parametrize("outcome,expected", [
    (http(503, 5.0), AS_FAILURE),
    (http(503, 3600.0), AS_FAILURE),  # not worth retrying, still a host failure
    (http(503), AS_FAILURE),
    (http(429), AS_FAILURE),
    (http(500), AS_FAILURE),
    (Denial(Reason.TIMEOUT, "slow"), AS_FAILURE),
    (Denial(Reason.CONNECTION_ERROR, "reset"), AS_FAILURE),
    (Denial(Reason.DNS_ERROR, "no such host"), AS_FAILURE),
    (Denial(Reason.TLS_ERROR, "bad cert"), AS_FAILURE),
    # An answer that is not a success neither counts nor resets the failures in a row:
    # a host whose images time out between quick 404s is still given up.
    (http(404), NOT_REPORTED),
    (http(403), NOT_REPORTED),
    (Denial(Reason.TOO_LARGE, "big", 200), NOT_REPORTED),
    (Denial(Reason.X_ROBOTS_TAG, "noai", 200), NOT_REPORTED),
    (fetched(), AS_OK),
    (URL("https://img.example/next.jpg"), AS_OK),  # a redirect
    (Denial(Reason.BLOCKED_ADDRESS, "10.0.0.1"), NOT_REPORTED),  # no request made
    (Denial(Reason.TOO_LARGE, "declared too big"), NOT_REPORTED),
])
def test_client_report_classifies_outcomes(outcome: Any, expected: float) -> None:
    client = make_client()
    client.slots.report(HOST, ok=False)
    client._report(URL_, outcome)
    assert client.slots.report(HOST, ok=False) == expected


@pytest.mark.parametrize("outcome,ready_in", [
    (http(503, 5.0), 5.0),
    (http(503, 3600.0), 60.0),  # capped at max_retry_after
    (http(429, 0.0), 1.0),  # the backoff stands
    (http(503), 1.0),
    (Denial(Reason.TIMEOUT, "slow"), 1.0),
])
def test_client_report_moves_the_host_later(outcome: Denial, ready_in: float) -> None:
    clock = FakeClock()
    client = make_client(clock=clock)
    client._report(URL_, outcome)
    assert client.slots.ready_at(HOST) == clock() + ready_in
    assert client.slots.last_failure(HOST) is outcome
    assert client.slots.ready_at("other.example") == 0.0


def test_client_long_retry_after_is_not_retried_but_backs_the_host_off() -> None:
    clock = FakeClock()
    client = make_client(clock=clock, max_retry_after=60.0)
    outcome = http(503, 3600.0)
    assert client.is_transient(outcome) is False
    client._report(URL_, outcome)
    assert client.slots.ready_at(HOST) == clock() + 60.0


def test_client_gives_a_host_up_when_its_retry_after_passes_the_cap() -> None:
    client = make_client(max_failures=8, max_retry_after=60.0)
    client._report(URL_, http(503, 60.0))  # exactly the cap: waited for
    assert client.given_up(URL_) is None
    client._report(URL_, http(429, 3600.0))
    denial = client.given_up(URL_)
    assert denial is not None and denial.reason is Reason.HTTP_ERROR
    assert denial.evidence == (f"not requested: {HOST} asked for Retry-After: 3600 s, longer "
                               "than --max-retry-after 60 s; given up for this run")


def test_client_deadline_is_cut_while_a_host_times_out() -> None:
    client = make_client()  # --timeout 1 s
    assert client.deadline(URL_) == 1.0
    client._report(URL_, Denial(Reason.TIMEOUT, "slow"))
    assert client.deadline(URL_) == 0.25
    assert client.deadline(URL("https://other.example/a.jpg")) == 1.0
    client._report(URL_, http(503))  # the host answers again, if badly
    assert client.deadline(URL_) == 1.0
    client._report(URL_, Denial(Reason.TIMEOUT, "slow"))
    client._report(URL_, fetched())  # a success ends it
    assert client.deadline(URL_) == 1.0


def test_client_404_leaves_no_host_state() -> None:
    client = make_client()
    client._report(URL_, http(404))
    assert client.slots.ready_at(HOST) == 0.0
    assert client.slots.last_failure(HOST) is None
    assert len(client.slots) == 0


@pytest.mark.parametrize("last,reason", [
    (http(503, 5.0), Reason.HTTP_ERROR),
    (Denial(Reason.TIMEOUT, "no complete response within 1 s"), Reason.TIMEOUT),
    (Denial(Reason.DNS_ERROR, "no such host"), Reason.DNS_ERROR),
])
def test_client_given_up(last: Denial, reason: Reason) -> None:
    client = make_client(max_failures=2)
    assert client.given_up(URL_) is None
    client._report(URL_, Denial(Reason.CONNECTION_ERROR, "reset"))
    assert client.given_up(URL_) is None
    client._report(URL_, last)
    denial = client.given_up(URL_)
    assert isinstance(denial, Denial)
    assert denial.reason is reason
    assert denial.evidence.startswith("not requested:")
    assert HOST in denial.evidence
    assert "2 times" in denial.evidence
    assert last.evidence in denial.evidence
    assert client.given_up(URL("https://other.example/x.jpg")) is None
    assert client.given_up(URL(f"http://{HOST}/b.png")) == denial  # the host, not the URL


def test_client_given_up_without_a_denial_on_record() -> None:
    client = make_client(max_failures=1)
    client.slots.report(HOST, ok=False, evidence="mystery")  # no outcome object
    denial = client.given_up(URL_)
    assert denial is not None
    assert denial.reason is Reason.CONNECTION_ERROR
    assert denial.evidence.startswith("not requested:")


# -- per-host state is bounded by the hosts that matter ---------------------------------------

def test_sweep_forgets_idle_hosts_and_keeps_those_that_matter() -> None:
    clock = FakeClock()
    slots = HostSlots(1, max_failures=2, backoff_base=1.0, clock=clock, jitter=no_jitter)

    async def scenario() -> None:
        for host, delay in (("gap", 10.0), ("passed", 0.5), ("plain", 0.0)):
            slots.set_delay(host, delay)
            async with slots.slot(host):
                pass
        slots.report("backoff", ok=False)  # blocked for 1 s
        slots.report("dead", ok=False)
        slots.report("dead", ok=False)  # given up
        clock.advance(2.0)
        # "plain" was forgotten when its slot closed; "passed" (gap over) goes now.
        assert slots.sweep() == 1
    run(scenario)
    assert slots.ready_at("gap") == 1010.0  # inside its gap: kept
    assert slots.given_up("dead") is not None  # given up: kept
    assert slots.ready_at("backoff") == 1001.0  # its failure streak counts for the breaker
    assert len(slots) == 3


def test_host_table_stays_bounded_over_many_hosts() -> None:
    clock = FakeClock()
    slots = HostSlots(1, min_delay=0.5, clock=clock, jitter=no_jitter)

    async def scenario() -> int:
        largest = 0
        for i in range(20_000):
            async with slots.slot(f"h{i}"):
                pass
            clock.advance(0.01)  # a host's 0.5 s gap passes after 50 more hosts
            largest = max(largest, len(slots))
        return largest
    assert run(scenario) <= 2048


def test_scheduler_forgets_finished_hosts() -> None:
    slots = HostSlots(2, clock=FakeClock())
    scheduler: HostScheduler[int] = HostScheduler(slots, 2)
    for i in range(300):
        scheduler.add(f"h{i % 100}", i)

    async def scenario() -> list[int]:
        seen = []
        while (item := await scheduler.next()) is not None:
            host, value = item
            seen.append(value)
            scheduler.done(host)
        return seen
    assert sorted(run(scenario)) == list(range(300))
    assert len(scheduler) == 0
    scheduler.add("h1", 7)  # a host can come back
    assert len(scheduler) == 1
