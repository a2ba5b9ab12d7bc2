"""The local distributor: shards in this process, or over spawned worker processes.

Every process (this one, or each worker) runs its shards on one long-lived
event loop (:func:`~.task.shard_stream`), taking the next shard while the
one before drains its last rows, so a slow host at the end of a shard does
not idle the process. Worker processes take shards from one shared queue
when their loop has spare workers, and send each outcome back when its shard
is complete. Shards are read lazily from the input and handed out a few at a
time, so memory holds at most ``2 × processes`` shards of rows, whatever the
input size. Worker processes are started with ``spawn`` (safe next to
threads, and the same on every platform); each keeps its per-process cache
(:mod:`~consentfetch.workercache`) across the shards it runs. Progress flows
back through a queue in small batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ..config import FetchConfig
from ..pipeline import ProgressSink, ShardOutcome
from ..progress import HostWait, Progress
from ..reader import ShardInput
from ..writer import OutputDir
from .originphase import fetch_origin_batch
from .task import preload_lists, shard_stream

logger = logging.getLogger(__name__)

_FLUSH_EVERY = 0.25  # seconds between progress messages from a worker
_POLL = 0.2  # seconds between looks at the worker processes' health, and at the inbox
_LAST_OUTCOMES = 30.0  # seconds to wait for outcomes after every worker has returned
_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


@dataclass(frozen=True)
class _Queues:
    """A worker process's queues: progress out, shards in, outcomes out."""

    updates: Any
    inbox: Any  # ShardInput, or None: no more shards for this worker
    outcomes: Any  # ShardOutcome of each complete shard


_worker_queues: _Queues | None = None  # set in each worker process by _init_worker


class StopRequested(KeyboardInterrupt):
    """Raised by the CLI's SIGTERM handler: stop like Ctrl-C.

    Unlike Ctrl-C in a terminal, a SIGTERM reaches only this process, so the
    worker processes are interrupted in turn: they discard their in-flight
    shards (nothing half-written stays visible) and the run stops.
    """


class LocalDistributor:
    """This machine: in this process, or over ``processes`` spawned worker processes."""

    name = "multiprocessing"

    def __init__(self, processes: int) -> None:
        self.parallelism = max(1, processes)
        # No origin phase on one machine: it costs a full extra pass over the
        # input (every URL parsed) and a round of origin fetches before the first
        # image request, which for a LAION-sized parquet is minutes of nothing.
        # Without it each worker process fetches an origin's files once: a few
        # small requests per origin per process, a price worth the immediate start.
        self.shared_origins = False

    def fetch_origins(self, batches: Iterable[list[str]],
                      config: FetchConfig) -> Iterator[list[dict[str, Any]]]:
        origins = [base for batch in batches for base in batch]  # one loop fetches them all
        if origins:
            yield fetch_origin_batch(origins, config)

    def run_shards(self, shards: Iterable[ShardInput], config: FetchConfig, out: OutputDir,
                   extra_fields: list[pa.Field], progress: Progress) -> Iterator[ShardOutcome]:
        return run_all(shards, config, out, extra_fields, progress, self.parallelism)

    def close(self) -> None:
        pass


def run_all(shards: Iterable[ShardInput], config: FetchConfig, out: OutputDir,
            extra_fields: list[pa.Field], progress: Progress,
            processes: int) -> Iterator[ShardOutcome]:
    """Run every shard; yields outcomes as shards complete (in completion order)."""
    if processes <= 1:
        yield from _run_here(shards, config, out, extra_fields, progress.update)
        return
    yield from _run_pool(shards, config, out, extra_fields, progress, processes)


def _run_here(shards: Iterable[ShardInput], config: FetchConfig, out: OutputDir,
              extra_fields: list[pa.Field], progress: ProgressSink) -> Iterator[ShardOutcome]:
    """In this process: one loop, stepped from here to yield each outcome.

    The next shard is read in a thread, so reading it does not stall the
    shard under way. Stopped early (Ctrl-C, an error), closing the loop
    cancels the shards under way, which remove their files.
    """
    source = iter(shards)

    async def next_shard() -> ShardInput | None:
        return await asyncio.to_thread(next, source, None)

    # The run's only process: its cache holds what its earlier shards fetched.
    stream = shard_stream(next_shard, config, out, extra_fields, progress, seed=False)

    async def step() -> ShardOutcome | None:
        return await anext(stream, None)

    with asyncio.Runner() as runner:
        while (outcome := runner.run(step())) is not None:
            yield outcome


def _run_pool(shards: Iterable[ShardInput], config: FetchConfig, out: OutputDir,
              extra_fields: list[pa.Field], progress: Progress,
              processes: int) -> Iterator[ShardOutcome]:
    ctx = multiprocessing.get_context("spawn")
    queues = _Queues(ctx.Queue(), ctx.Queue(), ctx.Queue())
    stop = threading.Event()
    drain = threading.Thread(target=_drain, args=(queues.updates, progress, stop), daemon=True)
    drain.start()
    executor = ProcessPoolExecutor(processes, mp_context=ctx, initializer=_init_worker,
                                   initargs=(queues, logging.getLogger().level, config,
                                             out.storage_options))
    try:
        workers = [executor.submit(_worker_serve, config, out, extra_fields)
                   for _ in range(processes)]
        yield from _feed(shards, queues, workers)
    except StopRequested:
        for child in multiprocessing.active_children():
            if child.pid is not None:
                os.kill(child.pid, signal.SIGINT)
        raise
    finally:
        _stop_feeding(queues.inbox, processes)
        _shut_down(executor, queues.outcomes)
        queues.inbox.cancel_join_thread()  # what no worker took is not waited for
        stop.set()
        drain.join(5)


def _feed(shards: Iterable[ShardInput], queues: _Queues,
          workers: list[Future[None]]) -> Iterator[ShardOutcome]:
    """Hand out shards (at most 2 per process not yet complete); yield outcomes as they come."""
    limit = 2 * len(workers)
    source = iter(shards)
    outstanding = 0  # shards handed out, not yet complete
    more = True
    idle_since: float | None = None
    while more or outstanding:
        while more and outstanding < limit:
            shard = next(source, None)
            if shard is None:
                more = False
                for _ in workers:
                    queues.inbox.put(None)
            else:
                queues.inbox.put(shard)
                outstanding += 1
        try:
            outcome = queues.outcomes.get(timeout=_POLL)
        except queue.Empty:
            idle_since = _check_workers(workers, idle_since)
            continue
        outstanding -= 1
        yield outcome


def _check_workers(workers: list[Future[None]], idle_since: float | None) -> float | None:
    """Raise what a worker process raised (or its death); bound the wait for outcomes
    still in the pipe once every worker has returned. Returns when that wait began."""
    for worker in workers:
        if worker.done() and worker.exception() is not None:
            worker.result()
    if not all(worker.done() for worker in workers):
        return None
    now = time.monotonic()
    if idle_since is None:
        return now
    if now - idle_since > _LAST_OUTCOMES:
        raise RuntimeError("worker processes returned without the outcome of every shard")
    return idle_since


def _shut_down(executor: ProcessPoolExecutor, outcomes: Any) -> None:
    """Wait for the worker processes to exit, reading and dropping the outcomes they
    still send. A worker exits only once what it sent is in the pipe, so after a failure
    (when nobody reads outcomes any more) one whose outcome was bigger than the pipe
    holds would never exit, and the run would hang instead of failing."""
    exited = threading.Event()

    def shut_down() -> None:
        try:
            executor.shutdown(wait=True, cancel_futures=True)
        finally:
            exited.set()

    waiter = threading.Thread(target=shut_down, name="consentfetch-shutdown", daemon=True)
    waiter.start()
    while not exited.is_set():
        try:
            outcomes.get(timeout=_POLL)
        except queue.Empty:
            continue
        except (EOFError, OSError, ValueError):  # the pipe is gone: nothing more to read
            break
    waiter.join()


def _stop_feeding(inbox: Any, processes: int) -> None:
    """Take back the shards no worker has started, and tell every worker to stop."""
    with contextlib.suppress(queue.Empty, OSError, ValueError):
        while True:
            inbox.get_nowait()
    for _ in range(processes):
        with contextlib.suppress(OSError, ValueError):
            inbox.put(None)


def _drain(updates: Any, progress: Progress, stop: threading.Event) -> None:
    while not (stop.is_set() and updates.empty()):
        try:
            done, successes, waiting = updates.get(timeout=0.2)
        except queue.Empty:
            continue
        except (EOFError, OSError):
            return
        progress.update(done, successes, waiting)


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this worker if the parent process dies.

    Without it a parent killed with SIGKILL leaves orphan workers that go on
    writing their shards, racing the resumed run that redoes them.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        logger.debug("prctl(PR_SET_PDEATHSIG) unavailable", exc_info=True)
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


def _init_worker(queues: _Queues, log_level: int, config: FetchConfig | None = None,
                 storage_options: dict[str, Any] | None = None) -> None:
    global _worker_queues
    _die_with_parent()
    _worker_queues = queues
    logging.basicConfig(level=log_level or logging.WARNING,
                        format="%(asctime)s %(processName)s %(levelname)s %(name)s: %(message)s")
    if config is not None:
        preload_lists(config, storage_options)


class _QueueSink:
    """Batches progress in a worker and sends it at most every 0.25 s."""

    def __init__(self, updates: Any) -> None:
        self._updates = updates
        self._done = self._ok = 0
        self._waiting: dict[int, HostWait] = {}  # each shard's latest, not yet sent
        self._last = time.monotonic()

    def __call__(self, done: int, successes: int, waiting: HostWait | None = None) -> None:
        self._done += done
        self._ok += successes
        if waiting is not None:
            self._waiting[waiting.shard_id] = waiting
        if time.monotonic() - self._last >= _FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        waits: list[HostWait | None] = [*self._waiting.values()] or [None]
        first, *others = waits
        if self._done or first:  # the counts go with the first message
            self._updates.put((self._done, self._ok, first))
        for waiting in others:
            self._updates.put((0, 0, waiting))
        self._done = self._ok = 0
        self._waiting.clear()
        self._last = time.monotonic()


def _worker_serve(config: FetchConfig, out: OutputDir, extra_fields: list[pa.Field]) -> None:
    """A worker process's whole share of the run: shards from the inbox, on one loop,
    each outcome sent back when its shard is complete; returns at the inbox's None."""
    queues = _worker_queues
    if queues is None:
        raise RuntimeError("_worker_serve runs in a worker process started by _run_pool")
    sink = _QueueSink(queues.updates)

    async def next_shard() -> ShardInput | None:
        while True:  # polled, so a cancelled wait leaves no thread blocked for long
            shard = await asyncio.to_thread(_take, queues.inbox)
            if shard is not _NOTHING:
                assert shard is None or isinstance(shard, ShardInput)
                return shard

    async def serve() -> None:
        async for outcome in shard_stream(next_shard, config, out, extra_fields, sink):
            sink.flush()
            queues.outcomes.put(outcome)

    try:
        asyncio.run(serve())
    finally:
        sink.flush()


_NOTHING = object()


def _take(inbox: Any) -> object:
    """The inbox's next item, or :data:`_NOTHING` after :data:`_POLL` seconds."""
    try:
        return inbox.get(timeout=_POLL)
    except queue.Empty:
        return _NOTHING
