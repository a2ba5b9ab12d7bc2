"""The connection pool keeps few idle sockets over a long tail of hosts.

Run against the local site on many loopback origins: the server counts the
connections it still has open, which is what a process's file descriptors
and a site's resources see.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import aiohttp
import pytest
from yarl import URL

from consentfetch.consent.decision import Denial
from consentfetch.net.client import Fetched, HttpClient
from consentfetch.net.politeness import HostSlots
from consentfetch.net.pool import BoundedIdleConnector
from consentfetch.testsite import LocalSite, make_image, running_site

HOSTS = tuple(f"127.0.3.{i}" for i in range(1, 41))


@pytest.fixture(scope="module")
def many() -> Iterator[LocalSite]:
    with running_site(HOSTS) as site:
        image = make_image(8, 8)
        for host in HOSTS:
            site.put(host, "/a.jpg", image)
        yield site


def settled_connections(site: LocalSite, at_most: int, within: float = 1.0) -> int:
    """The server's open connections, once they are ``at_most`` or ``within`` s passed."""
    deadline = time.monotonic() + within
    while True:
        count = site.open_connections()
        if count <= at_most or time.monotonic() > deadline:
            return count
        time.sleep(0.02)


async def no_denial(*_: object) -> Denial | None:
    return None


def test_client_keeps_at_most_its_idle_share_over_a_long_tail(many: LocalSite) -> None:
    """40 hosts asked once each: the pool keeps 2 × concurrency idle, not 40."""
    async def run() -> tuple[list[Fetched | Denial], int]:
        slots = HostSlots(2)
        async with HttpClient(user_agent="consentfetch-tests", timeout=5.0, max_bytes=1 << 20,
                              max_redirects=2, retries=1, concurrency=2, slots=slots,
                              allow_private_networks=True) as client:
            outcomes = []
            for host in HOSTS:
                outcomes.append(await client.fetch_image(
                    URL(many.url(host, "/a.jpg")), check_hop=no_denial,
                    check_headers=no_denial))
            # Counted while the session is open: aiohttp keeps idle sockets 2 s.
            return outcomes, await asyncio.to_thread(settled_connections, many, 4)

    outcomes, open_now = asyncio.run(run())
    assert all(isinstance(o, Fetched) and o.http_status == 200 for o in outcomes)
    assert open_now <= 4


def test_connector_closes_the_idle_connection_released_longest_ago(many: LocalSite) -> None:
    """A host asked again and again keeps its warm connection while one-off hosts pass."""
    async def run() -> tuple[int, int, int]:
        connector = BoundedIdleConnector(max_idle=3, keepalive_timeout=30)
        hot = many.url(HOSTS[0], "/a.jpg")
        async with aiohttp.ClientSession(connector=connector) as session:
            for host in HOSTS[1:21]:
                for url in (hot, many.url(host, "/a.jpg")):
                    async with session.get(url) as response:
                        await response.read()
            idle = connector.idle_count()
            open_now = await asyncio.to_thread(settled_connections, many, 3)
            return idle, open_now, len(connector._conns)

    connections_before = many.connections_made
    idle, open_now, keys = asyncio.run(run())
    assert idle == 3 and keys == 3
    assert open_now <= 3
    # 20 one-off hosts, and the hot host on a single connection throughout.
    assert many.connections_made - connections_before == 21


def test_connector_with_no_idle_share_closes_every_released_connection(
        many: LocalSite) -> None:
    async def run() -> int:
        connector = BoundedIdleConnector(max_idle=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            for host in HOSTS[:5]:
                async with session.get(many.url(host, "/a.jpg")) as response:
                    assert response.status == 200
                    await response.read()
            return connector.idle_count()

    assert asyncio.run(run()) == 0
    with pytest.raises(ValueError):
        BoundedIdleConnector(max_idle=-1)


def test_pooled_entries_are_the_shape_the_connector_relies_on(many: LocalSite) -> None:
    """aiohttp's private pool, read by BoundedIdleConnector: (protocol, time) per key."""
    async def run() -> None:
        connector = BoundedIdleConnector(max_idle=8)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.get(many.url(HOSTS[0], "/a.jpg")) as response:
                await response.read()
            [(key, pooled)] = connector._conns.items()
            [(protocol, released_at)] = pooled
            assert key.host == HOSTS[0]
            assert protocol.is_connected() and isinstance(released_at, float)

    asyncio.run(run())


def limits_after(soft: int, hard: int, sockets: int) -> tuple[list[str], str]:
    """The open-file limits after ``ensure_open_files(sockets)`` in a new process that
    started with ``soft`` / ``hard`` (the test's own process keeps its limits)."""
    code = textwrap.dedent(f"""
        import logging, resource
        logging.basicConfig(level=logging.WARNING)
        resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))
        from consentfetch.net.pool import ensure_open_files
        print(ensure_open_files({sockets}), *resource.getrlimit(resource.RLIMIT_NOFILE))
        ensure_open_files({sockets})
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout.split(), done.stderr


def _hard_limit() -> int:
    """This process's hard open-file limit: a child may lower it, never raise it
    (without privileges), so the tests below stay under it."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limit = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if limit < 1024:
        pytest.skip(f"the hard open-file limit here is {limit}; these tests need 1024")
    return min(limit, 4096)


@pytest.mark.parametrize(("soft", "hard", "sockets", "expected"), [
    (300, None, 512, ["768", "768", None]),  # raised to what is needed, not to the hard limit
    (800, None, 512, ["800", "800", None]),  # enough already: left alone
    (300, 500, 512, ["500", "500", "500"]),  # as far as the hard limit allows
])
def test_the_open_file_limit_is_raised_to_what_the_connections_need(
        soft: int, hard: int | None, sockets: int, expected: list[str | None]) -> None:
    hard = hard or _hard_limit()
    expected = [str(hard) if e is None else e for e in expected]
    limits, stderr = limits_after(soft, hard, sockets)
    assert limits == expected
    warned = stderr.count("open-file limit (ulimit -n) is")
    assert warned == (1 if int(limits[0]) < sockets + 256 else 0)  # said once, up front


def test_a_client_raises_the_limit_for_its_concurrency() -> None:
    hard = _hard_limit()
    code = textwrap.dedent(f"""
        import asyncio, resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, {hard}))
        from consentfetch.net.client import HttpClient
        from consentfetch.net.politeness import HostSlots

        async def main():
            async with HttpClient(user_agent="t", timeout=1.0, max_bytes=1, max_redirects=1,
                                  retries=1, concurrency=128, slots=HostSlots(2),
                                  allow_private_networks=True):
                print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert int(done.stdout) == 128 * 4 + 256
