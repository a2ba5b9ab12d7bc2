"""A process's event loop: its shards, up to two at once, over one client and one budget.

A shard cannot finish before its last row, and its last rows are often one
slow host's: run a shard at a time and the process sits nearly idle while
they drain. So the shards a process runs share one loop (:class:`ShardLoop`):
one HTTP session and its per-host slots (``--per-host-concurrency`` holds
across the shards, and so do crawl delays and backoff), one image thread
pool, one set of single-flight origin and licence loads, and
``--concurrency`` workers: the process's request budget, whatever the number
of shards. The workers take the oldest shard's rows first; the next shard
gets only the workers the older one cannot use (its hosts at their limit,
waiting out a gap or a backoff, or no rows left to hand out).

:meth:`ShardLoop.serve` takes shards from a source while the loop has
spare workers, at most :data:`DEPTH` at a time, and yields each shard's
outcome when it is complete. Each shard is still written and committed on
its own (temporary names, renamed when complete, stats last), in whatever
order the shards finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pyarrow as pa
from yarl import URL

from .config import FetchConfig
from .consent.decision import Denial, Status
from .consent.engine import Permits
from .consent.origins import origin_of
from .layout import compute_key
from .net.client import HttpClient
from .net.politeness import HostLoad, HostScheduler, HostSlots
from .pipeline import (
    Flights,
    ProgressSink,
    ShardOutcome,
    _Shard,
    make_client,
    parse_row_url,
    process_confined,
    run_columns,
)
from .progress import HostWait
from .reader import InputRow, ShardInput
from .writer import OutputDir, RowResult, ShardWriter

logger = logging.getLogger(__name__)

DEPTH = 2  # shards a loop runs at once: one draining, the next taking its idle workers
WARM_SHARE = 4  # 1/4 of --concurrency loads a shard's origin policies ahead of its rows
WAIT_REPORT_EVERY = 1.0  # seconds between reports of the hosts a shard is waiting for

_Work = tuple[int, InputRow, URL | Denial]  # (index in shard, row, its parsed URL)
ShardSource = Callable[[], Awaitable[ShardInput | None]]  # the next shard; None: no more


def schedule(shard: ShardInput, slots: HostSlots, per_host: int,
             load: HostLoad | None = None) -> tuple[HostScheduler[_Work], list[URL]]:
    """Queue the shard's rows by host, so hosts take turns and none can stall the rest;
    and the first URL of each origin, in the order they first appear."""
    scheduler: HostScheduler[_Work] = HostScheduler(slots, per_host, load)
    origins: dict[str, URL] = {}
    indices = shard.indices if shard.indices is not None else range(len(shard.rows))
    for index, row in zip(indices, shard.rows, strict=True):
        url = parse_row_url(row)
        host = (url.host or "") if isinstance(url, URL) else ""  # "": no request is made
        scheduler.add(host, (index, row, url))
        if isinstance(url, URL):
            origins.setdefault(origin_of(url), url)
    return scheduler, list(origins.values())


@dataclass(eq=False)
class _Running:
    """A shard on the loop: its rows' context, scheduler and writer."""

    shard: ShardInput
    ctx: _Shard
    scheduler: HostScheduler[_Work]
    writer: ShardWriter
    progress: ProgressSink | None
    left: int  # rows not yet written
    finished: asyncio.Future[None]  # every row written, or the shard's failure
    helpers: list[asyncio.Task[None]]  # its origin warm-up and wait reports, while it runs


class ShardLoop:
    """Runs shards on this event loop, up to :data:`DEPTH` at once; ``async with`` it."""

    def __init__(self, config: FetchConfig, out: OutputDir, extra_fields: list[pa.Field], *,
                 depth: int = DEPTH) -> None:
        self.config = config
        self.out = out
        self.extra_fields = extra_fields
        self.depth = max(1, depth)
        self._running: list[_Running] = []  # oldest first
        self._load = HostLoad()  # rows in flight per host, across the shards
        self._flights = Flights()
        self._spare = asyncio.Event()  # a worker found no row in any running shard
        self._stack = contextlib.AsyncExitStack()
        self._client: HttpClient | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._workers: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> ShardLoop:
        async with contextlib.AsyncExitStack() as stack:
            self._pool = stack.enter_context(ThreadPoolExecutor(
                max_workers=_image_threads(), thread_name_prefix="consentfetch-image"))
            self._client = await stack.enter_async_context(make_client(self.config))
            self._workers = [asyncio.create_task(self._work())
                             for _ in range(self.config.concurrency)]
            stack.push_async_callback(self._stop_workers)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._stack.aclose()

    async def _stop_workers(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)

    # -- one shard ---------------------------------------------------------------------
    async def run(self, shard: ShardInput, progress: ProgressSink | None = None) -> ShardOutcome:
        """Download, check, resize and write ``shard``; returns when it is committed.

        Cancelled or failed, the shard's files are removed (nothing partial
        stays visible); the rows it had in flight finish and are dropped.
        """
        started = time.monotonic()
        logger.debug("shard %d: started, %d shard(s) already on the loop", shard.shard_id,
                     len(self._running))
        replace = None
        if shard.indices is not None:
            replace = {compute_key(shard.shard_id, i, self.config.shard_size)
                       for i in shard.indices}
        writer = ShardWriter(self.out, shard.shard_id, self.extra_fields,
                             encode_format=self.config.encode_format,
                             save_caption=self.config.caption_col is not None,
                             run_columns=run_columns(self.config), replace_keys=replace)
        try:
            running = self._add(shard, writer, progress)
            try:
                await running.finished
            finally:
                self._running.remove(running)
                if not running.finished.done():
                    running.finished.cancel()  # rows still in flight are dropped
                await _cancel(running.helpers)
                if progress is not None:
                    progress(0, 0, waiting=HostWait(shard.shard_id, 0, None))
            stats = writer.commit()
        except BaseException:
            writer.abort()
            raise
        logger.debug("shard %d: %d rows in %.1f s", shard.shard_id, len(shard.rows),
                     time.monotonic() - started)
        used = [*running.ctx.policies.used.values(), *running.ctx.licences.used.values()]
        return ShardOutcome(shard.shard_id, stats, [f.to_row() for f in used])

    def _add(self, shard: ShardInput, writer: ShardWriter,
             progress: ProgressSink | None) -> _Running:
        client, pool = self._client, self._pool
        if client is None or pool is None:
            raise RuntimeError("ShardLoop used outside 'async with'")
        ctx = _Shard(self.config, client, pool, self.out.storage_options,
                     flights=self._flights)
        # Rows that make no request (host "") are not limited per host.
        scheduler, origins = schedule(shard, client.slots, self.config.per_host_concurrency,
                                      self._load)
        helpers = [asyncio.create_task(
            _warm_origins(ctx, origins, self.config.concurrency // WARM_SHARE))]
        if progress is not None:
            helpers.append(asyncio.create_task(
                _report_waits(shard.shard_id, client.slots, scheduler, progress)))
        running = _Running(shard, ctx, scheduler, writer, progress, len(shard.rows),
                           asyncio.get_running_loop().create_future(), helpers)
        if not shard.rows:
            running.finished.set_result(None)
        self._running.append(running)
        self._spare.clear()  # spare workers are judged again with this shard's rows
        client.slots.changed.set()  # idle workers: rows to look at
        return running

    # -- the workers ---------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            picked = self._pick()
            if picked is None:
                await self._wait()
                continue
            running, host, (index, row, url) = picked
            # The host's turn ends with its requests: the next row of a big host
            # goes out while this one's image is decoded.
            fetched = _once(functools.partial(running.scheduler.done, host))
            try:
                result = await process_confined(running.ctx, row, url, fetched)
            finally:
                fetched()
            self._record(running, index, row, result)

    def _pick(self) -> tuple[_Running, str, _Work] | None:
        """A row that may go now, from the oldest shard that has one."""
        for running in self._running:
            if running.finished.done():
                continue
            picked = running.scheduler.pick()
            if picked is not None:
                return running, *picked
        return None

    async def _wait(self) -> None:
        """Until a host may be ready, a row is done, or a shard is added."""
        assert self._client is not None
        slots = self._client.slots
        wakes = [at for running in self._running
                 if (at := running.scheduler.wake_at()) is not None]
        timeout = max(0.0, min(wakes) - slots.now()) if wakes else None
        if self._running:
            self._spare.set()
        slots.changed.clear()
        try:
            await asyncio.wait_for(slots.changed.wait(), timeout)
        except TimeoutError:
            pass

    def _record(self, running: _Running, index: int, row: InputRow, result: RowResult) -> None:
        """Write a row's result to its shard; the shard is finished with its last row."""
        if running.finished.done():  # the shard failed or was cancelled meanwhile
            return
        key = compute_key(running.shard.shard_id, index, self.config.shard_size)
        try:
            running.writer.add(key, row, result)
            if running.progress is not None:
                running.progress(1, int(result.status is Status.SUCCESS))
        except Exception as exc:  # the shard's output failed (a full disk): this shard only
            running.finished.set_exception(exc)
            return
        running.left -= 1
        if running.left == 0:
            running.finished.set_result(None)

    # -- many shards -----------------------------------------------------------------------
    def _wants(self, started: int) -> bool:
        """Whether to start another shard, ``started`` shards being under way.

        One when there is none; a second when every shard started is on the
        loop and a worker has found no row in any of them since the newest
        was added: the running shards cannot use all the workers.
        """
        if started == 0:
            return True
        return started < self.depth and len(self._running) == started \
            and self._spare.is_set()

    async def serve(self, next_shard: ShardSource,
                    run: Callable[[ShardInput], Awaitable[ShardOutcome]]
                    ) -> AsyncGenerator[ShardOutcome, None]:
        """Run the shards ``next_shard`` gives with ``run`` (which calls :meth:`run`),
        starting one while the loop has spare workers; yields outcomes as shards complete.

        If this generator is closed or fails, the shards under way are cancelled.
        """
        tasks: set[asyncio.Future[ShardOutcome]] = set()
        fetch: asyncio.Future[ShardInput | None] | None = None
        more = True
        try:
            while more or tasks:
                if more and fetch is None and self._wants(len(tasks)):
                    fetch = asyncio.ensure_future(next_shard())
                waits: set[asyncio.Future[Any]] = set(tasks)
                if fetch is not None:
                    waits.add(fetch)
                elif more and len(tasks) < self.depth:  # until a worker finds no row
                    waits.add(asyncio.ensure_future(self._spare.wait()))
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waits - done - tasks - {fetch}:
                    waiter.cancel()
                if fetch is not None and fetch in done:
                    shard, fetch = fetch.result(), None
                    if shard is None:
                        more = False
                    else:
                        tasks.add(asyncio.ensure_future(run(shard)))
                for task in [t for t in tasks if t in done]:
                    tasks.discard(task)
                    yield task.result()
        finally:
            await _cancel([*tasks, *([fetch] if fetch else [])])


async def _warm_origins(ctx: _Shard, urls: list[URL], runners: int) -> None:
    """Load a shard's origin policies ahead of its rows, ``runners`` at a time.

    A row that reaches an origin late in the shard then finds its files
    fetched or being fetched: a robots.txt that never answers costs its
    ``--timeout`` while the rest of the shard runs, not at the shard's end.
    The same files are fetched, once per origin and through the host slots,
    only sooner. An origin is skipped when its first row would not load its
    policy either (a refused address, an opt-out list entry): no origin is
    asked for a file that no row of it would have asked for.
    """
    pending = iter(urls)

    async def runner() -> None:
        for url in pending:  # shared: each origin is taken by one runner
            if ctx.client.guard(url) or ctx.engine.check_url(str(url), Permits()):
                continue  # a row would not load this policy for it either
            try:
                await ctx.policy(url)
            except Exception:  # the row that needs it meets this again, confined to it
                logger.debug("warming the origin policy of %s failed", url, exc_info=True)

    await asyncio.gather(*(runner() for _ in range(max(1, runners))))


async def _report_waits(shard_id: int, slots: HostSlots, scheduler: HostScheduler[_Work],
                        progress: ProgressSink) -> None:
    """Tell ``progress`` every second which hosts the shard is waiting for, so a run
    held by a backed-off host says so; until cancelled when the shard is done."""
    while True:
        await asyncio.sleep(WAIT_REPORT_EVERY)
        hosts, soonest = slots.backing_off(scheduler.queued)
        progress(0, 0, waiting=HostWait(shard_id, hosts, soonest))


async def _cancel(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until they are done, whatever they raise."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _once(call: Callable[[], None]) -> Callable[[], None]:
    """``call``, made safe to call more than once: only the first call runs it."""
    pending = [call]

    def once() -> None:
        while pending:
            pending.pop()()
    return once


def _image_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def run_shard(shard: ShardInput, config: FetchConfig, out: OutputDir,
              extra_fields: list[pa.Field], progress: ProgressSink | None = None) -> ShardOutcome:
    """Download, check, resize and write one shard on a loop of its own; blocks until
    it is complete (a cluster task: the engine runs the shards side by side)."""
    async def one() -> ShardOutcome:
        async with ShardLoop(config, out, extra_fields, depth=1) as loop:
            return await loop.run(shard, progress)

    return asyncio.run(one())
