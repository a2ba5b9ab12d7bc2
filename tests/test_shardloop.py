"""The shard loop: a process works on the next shard while one drains, within one budget."""

from __future__ import annotations

import asyncio
import queue
import time
from pathlib import Path

import pytest

from consentfetch import fetch_shards, read_audit
from consentfetch.errors import RunInterrupted
from consentfetch.net.politeness import HostLoad, HostScheduler, HostSlots
from consentfetch.progress import ProgressSnapshot
from consentfetch.testsite import LocalSite

from .conftest import with_local

SLOW = 1.0  # seconds the slow host takes to answer each request


def _rows(site: LocalSite, shard: int) -> list[dict[str, str]]:
    """Four quick images on two hosts, then two slow ones on the slow host (127.0.0.2)."""
    quick = [{"url": site.url(1 + i % 2, f"/gen/s{shard}-{i}.jpg?w=32&h=32")} for i in range(4)]
    slow = [{"url": site.url(0, f"/fault/slow?delay={SLOW}&s={shard}&i={i}")} for i in range(2)]
    return quick + slow


def test_next_shard_starts_while_a_slow_host_drains_the_first(
        site: LocalSite, url_list, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rows = _rows(site, 0) + _rows(site, 1)
    report = fetch_shards(url_list(rows), str(out), shard_size=6, image_size=32,
                          **with_local({"concurrency": 8, "per_host_concurrency": 2}))

    assert report.shards_written == 2
    assert report.counts == {"success": 12}
    assert len(read_audit(str(out))) == 12
    log = list(site.log)
    slow_starts = [t for t, _, path in log if path.startswith("/fault/slow") and "s=0" in path]
    shard1_starts = [t for t, _, path in log if path.startswith(("/gen/s1-", "/fault/slow"))
                     and ("s1-" in path or "s=1" in path)]
    assert len(slow_starts) == 2 and shard1_starts
    # Shard 0's slow rows cannot be answered before start + SLOW; shard 1 went out
    # before that, while shard 0 was draining.
    assert min(shard1_starts) < max(slow_starts) + SLOW
    # Both shards' slow rows (four) went to one host: never more than two at once.
    assert site.peak_inflight[site.hosts[0]] == 2


def test_two_schedulers_sharing_a_load_keep_a_host_to_its_limit() -> None:
    async def scenario() -> list[object]:
        slots = HostSlots(1)
        load = HostLoad()
        older: HostScheduler[str] = HostScheduler(slots, 1, load)
        newer: HostScheduler[str] = HostScheduler(slots, 1, load)
        older.add("h", "old")
        newer.add("h", "new")
        newer.add("k", "other")
        seen: list[object] = [older.pick(), newer.pick(), newer.pick()]
        older.done("h")  # the host is free again: offered to the other scheduler too
        seen.append(newer.pick())
        return seen

    assert asyncio.run(scenario()) == [("h", "old"), ("k", "other"), None, ("h", "new")]


@pytest.mark.timeout(10)
def test_a_worker_process_that_dies_fails_the_run_instead_of_hanging() -> None:
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from consentfetch.distribute import local
    from consentfetch.reader import ShardInput

    dead: Future[None] = Future()
    dead.set_exception(BrokenProcessPool("a worker process died"))
    alive: Future[None] = Future()
    queues = local._Queues(queue.Queue(), queue.Queue(), queue.Queue())
    shards = [ShardInput(i, []) for i in range(3)]
    started = time.monotonic()
    with pytest.raises(BrokenProcessPool):
        list(local._feed(shards, queues, [dead, alive]))
    assert time.monotonic() - started < 5


class _StopAt:
    """A progress view that presses Ctrl-C once ``rows`` rows are done."""

    interval = 0.0

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.pressed = False

    def show(self, snapshot: ProgressSnapshot) -> None:
        if snapshot.done >= self.rows and not self.pressed:
            self.pressed = True
            raise KeyboardInterrupt

    def close(self) -> None:
        pass


def test_ctrl_c_with_two_shards_under_way_leaves_neither_and_resume_finishes(
        site: LocalSite, url_list, tmp_path: Path) -> None:
    out = tmp_path / "out"
    urls = url_list(_rows(site, 0) + _rows(site, 1))
    options = with_local({"concurrency": 8, "per_host_concurrency": 2, "shard_size": 6,
                          "image_size": 32})
    # Both shards' quick rows are done long before shard 0's slow ones: two in flight.
    view = _StopAt(6)
    with pytest.raises(RunInterrupted):
        fetch_shards(urls, str(out), progress=view, **options)
    assert view.pressed
    left = sorted(p.name for p in out.iterdir())
    assert left == ["run.json"], left  # nothing partial, no .tmp

    report = fetch_shards(urls, str(out), **options)
    assert report.counts == {"success": 12} and report.shards_written == 2
