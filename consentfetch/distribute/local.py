"""The local distributor: shards in this process, or over spawned worker processes.

Shards are read lazily from the input and submitted a few at a time, so
memory holds at most ``2 × processes`` shards of rows, whatever the input
size. Worker processes are started with ``spawn`` (safe next to threads, and
the same on every platform); each keeps its per-process cache
(:mod:`~consentfetch.workercache`) across the shards it runs. Progress flows
back through a queue in small batches.
"""

from __future__ import annotations

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
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

import pyarrow as pa

from ..config import FetchConfig
from ..pipeline import ShardOutcome, run_shard
from ..progress import HostWait, Progress
from ..reader import ShardInput
from ..writer import OutputDir
from .originphase import fetch_origin_batch
from .task import preload_lists, shard_task

logger = logging.getLogger(__name__)

_FLUSH_EVERY = 0.25  # seconds between progress messages from a worker
_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
_worker_queue: Any = None  # set in each worker process by _init_worker
_worker_stop: Any = None  # the run's stop event, set in each worker process by _init_worker


class StopRequested(KeyboardInterrupt):
    """Raised by the CLI's SIGTERM handler: stop like Ctrl-C.

    Unlike Ctrl-C in a terminal, a SIGTERM reaches only this process, so the
    worker processes are interrupted in turn: they discard their in-flight
    shards (nothing half-written stays visible) and the run stops. Either
    way the shards queued for the workers are not started (a stop event set
    before the pool shuts down), and a worker raises this for each of them.
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
        for shard in shards:
            yield run_shard(shard, config, out, extra_fields, progress.update)
        return
    yield from _run_pool(shards, config, out, extra_fields, progress, processes)


def _run_pool(shards: Iterable[ShardInput], config: FetchConfig, out: OutputDir,
              extra_fields: list[pa.Field], progress: Progress,
              processes: int) -> Iterator[ShardOutcome]:
    ctx = multiprocessing.get_context("spawn")
    updates = ctx.Queue()
    stopping = ctx.Event()  # set on Ctrl-C/SIGTERM: queued shards are not started
    stop = threading.Event()
    drain = threading.Thread(target=_drain, args=(updates, progress, stop), daemon=True)
    drain.start()
    executor = ProcessPoolExecutor(processes, mp_context=ctx, initializer=_init_worker,
                                   initargs=(updates, logging.getLogger().level, config,
                                             out.storage_options, stopping))
    try:
        yield from _submit_all(executor, shards, config, out, extra_fields, processes)
    except KeyboardInterrupt as exc:
        # The executor has handed a few shards to its workers' queue beyond those
        # running; without this each would still be run, start to end, before
        # shutdown returns.
        stopping.set()
        if isinstance(exc, StopRequested):  # Ctrl-C in a terminal reaches the workers too
            for child in multiprocessing.active_children():
                if child.pid is not None:
                    os.kill(child.pid, signal.SIGINT)
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        stop.set()
        drain.join(5)


def _submit_all(executor: ProcessPoolExecutor, shards: Iterable[ShardInput],
                config: FetchConfig, out: OutputDir, extra_fields: list[pa.Field],
                processes: int) -> Iterator[ShardOutcome]:
    """Submit shards a few at a time (at most 2 per process pending); yield as they finish."""
    pending: set[Future[ShardOutcome]] = set()
    for shard in shards:
        pending.add(executor.submit(_worker_run, shard, config, out, extra_fields))
        if len(pending) >= 2 * processes:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (f.result() for f in done)
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        yield from (f.result() for f in done)


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


def _init_worker(updates: Any, log_level: int, config: FetchConfig | None = None,
                 storage_options: dict[str, Any] | None = None, stopping: Any = None) -> None:
    global _worker_queue, _worker_stop
    _die_with_parent()
    _worker_queue = updates
    _worker_stop = stopping
    logging.basicConfig(level=log_level or logging.WARNING,
                        format="%(asctime)s %(processName)s %(levelname)s %(name)s: %(message)s")
    if config is not None:
        preload_lists(config, storage_options)


class _QueueSink:
    """Batches progress in a worker and sends it at most every 0.25 s."""

    def __init__(self, updates: Any) -> None:
        self._updates = updates
        self._done = self._ok = 0
        self._waiting: HostWait | None = None  # the shard's latest, not yet sent
        self._last = time.monotonic()

    def __call__(self, done: int, successes: int, waiting: HostWait | None = None) -> None:
        self._done += done
        self._ok += successes
        self._waiting = waiting or self._waiting
        if time.monotonic() - self._last >= _FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if self._done or self._waiting:
            self._updates.put((self._done, self._ok, self._waiting))
        self._done = self._ok = 0
        self._waiting = None
        self._last = time.monotonic()


def _worker_run(shard: ShardInput, config: FetchConfig, out: OutputDir,
                extra_fields: list[pa.Field]) -> ShardOutcome:
    if _worker_stop is not None and _worker_stop.is_set():
        raise StopRequested()  # the run is stopping: this shard is not started
    sink = _QueueSink(_worker_queue) if _worker_queue is not None else None
    try:
        return shard_task(shard, config, out, extra_fields, sink)
    finally:
        if sink is not None:
            sink.flush()
