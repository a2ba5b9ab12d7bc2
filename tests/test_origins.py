"""OriginPolicies: how an origin's consent files are fetched (no network: a fake fetch)."""

from __future__ import annotations

import asyncio

from yarl import URL

from consentfetch.consent.decision import Denial, Reason
from consentfetch.consent.origins import FileKind, OriginPolicies, OriginPolicy
from consentfetch.net.client import SmallFetch

FILES = ("/robots.txt", "/ai.txt", "/.well-known/tdmrep.json")


def answer(status: int | None, body: bytes = b"", *, error: Denial | None = None,
           reached: bool = True) -> SmallFetch:
    return SmallFetch(URL("http://h/"), status, body, error=error, reached=reached)


def load(answers: dict[str, SmallFetch]) -> tuple[OriginPolicy, list[str], list[str]]:
    """Load one origin; each fetch waits until all three have started (bounded).

    Returns the policy, the paths fetched, and the events in order
    ("start <path>", "end <path>").
    """
    started: list[str] = []
    events: list[str] = []

    async def scenario() -> OriginPolicy:
        all_started = asyncio.Event()

        async def fetch(url: URL) -> SmallFetch:
            started.append(url.path)
            events.append(f"start {url.path}")
            if len(started) == len(FILES):
                all_started.set()
            try:  # a file fetched alone (the others waiting for it) ends the wait
                await asyncio.wait_for(all_started.wait(), 0.5)
            except TimeoutError:
                pass
            events.append(f"end {url.path}")
            return answers.get(url.path, answer(404))

        return await OriginPolicies(fetch).get(URL("http://h/a.jpg"))

    return asyncio.run(asyncio.wait_for(scenario(), 5)), started, events


def test_an_origins_files_are_fetched_at_once() -> None:
    policy, started, events = load({"/robots.txt": answer(200, b"User-agent: *\n")})
    assert sorted(started) == sorted(FILES)
    # All three went out before any answer came back: none waited for robots.txt.
    assert all(e.startswith("start ") for e in events[:3]), events
    assert policy.robots is not None
    assert set(policy.files) == {FileKind.ROBOTS_TXT, FileKind.AI_TXT, FileKind.TDMREP_JSON}


def test_robots_unreachable_drops_the_other_answers() -> None:
    policy, started, _ = load({
        "/robots.txt": answer(503),
        "/ai.txt": answer(200, b"User-agent: *\nDisallow: /\n"),
        "/.well-known/tdmrep.json": answer(200, b'[{"location": "/*", "tdm-reservation": 1}]'),
    })
    assert sorted(started) == sorted(FILES)  # asked together ...
    assert policy.robots is None and policy.unreached is None  # an HTTP answer came back
    assert set(policy.files) == {FileKind.ROBOTS_TXT}  # ... but only robots.txt is kept
    assert policy.ai_txt is None and policy.tdmrep is None


def test_robots_never_reached_says_why() -> None:
    error = Denial(Reason.DNS_ERROR, "no such host")
    policy, _, _ = load({"/robots.txt": answer(None, error=error, reached=False)})
    assert policy.robots is None and policy.unreached == error
    assert set(policy.files) == {FileKind.ROBOTS_TXT}


def test_robots_unreachable_does_not_wait_for_the_other_files() -> None:
    """A stalling host: robots.txt times out, and ai.txt and tdmrep.json (which would
    be dropped unread) are cancelled rather than waited for (with two slots per host
    the third file starts only when one of the first two ends: a second --timeout)."""
    cancelled: list[str] = []

    async def scenario() -> OriginPolicy:
        async def fetch(url: URL) -> SmallFetch:
            if url.path == "/robots.txt":
                await asyncio.sleep(0.01)
                return answer(None, error=Denial(Reason.TIMEOUT, "no answer"))
            try:
                await asyncio.sleep(60)  # never answers within the test
            except asyncio.CancelledError:
                cancelled.append(url.path)
                raise
            return answer(404)

        return await OriginPolicies(fetch).get(URL("http://h/a.jpg"))

    policy = asyncio.run(asyncio.wait_for(scenario(), 5))
    assert policy.robots is None and set(policy.files) == {FileKind.ROBOTS_TXT}
    assert sorted(cancelled) == sorted(FILES[1:])
