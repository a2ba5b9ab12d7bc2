"""Spread shards over worker processes, or over a Spark or Ray cluster.

Shards are read lazily from the input and submitted a few at a time, so
memory holds at most ``2 × processes`` shards of rows, whatever the input
size. Worker processes are started with ``spawn`` (safe next to threads, and
the same on every platform); each keeps its origin-policy cache across the
shards it runs. Progress flows back through a queue in small batches.

Every distributor runs the same shard task (:func:`~consentfetch.pipeline.run_shard`)
and the same origin phase (:mod:`~consentfetch.originphase`). On a cluster
(:mod:`~consentfetch.cluster`) a shard is the unit of work the engine retries;
:func:`cluster_task` makes a retry safe: it removes what a failed attempt left
of its shard before writing, keeps a shard an earlier attempt completed, and
seeds the worker's origin-policy cache from ``origins.parquet``.
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
from typing import Any, Protocol

import pyarrow as pa

from .config import FetchConfig
from .originphase import fetch_origin_batch, new_origin_rows, seed_policies
from .pipeline import ProgressSink, ShardOutcome, run_shard
from .progress import Progress
from .reader import ShardInput, shard_name
from .workercache import process_cache
from .writer import OutputDir

logger = logging.getLogger(__name__)

_FLUSH_EVERY = 0.25  # seconds between progress messages from a worker
_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
_worker_queue: Any = None  # set in each worker process by _init_worker


class StopRequested(KeyboardInterrupt):
    """Raised by the CLI's SIGTERM handler: stop like Ctrl-C.

    Unlike Ctrl-C in a terminal, a SIGTERM reaches only this process, so the
    worker processes are interrupted in turn: they discard their in-flight
    shards (nothing half-written stays visible) and the run stops.
    """


class Distributor(Protocol):
    """Where a run's origin phase and shards run."""

    name: str
    parallelism: int  # tasks that run at once
    shared_origins: bool  # run the origin phase first (more than one worker)

    def fetch_origins(self, batches: Iterable[list[str]],
                      config: FetchConfig) -> Iterator[list[dict[str, Any]]]:
        """The origins.parquet rows of each batch of origin base URLs."""
        ...

    def run_shards(self, shards: Iterable[ShardInput], config: FetchConfig, out: OutputDir,
                   extra_fields: list[pa.Field], progress: Progress) -> Iterator[ShardOutcome]:
        """Run every shard; yields outcomes as shards complete (in completion order)."""
        ...

    def close(self) -> None:
        ...


def distributor_for(config: FetchConfig, processes: int) -> Distributor:
    """The distributor ``config.distributor`` names; a cluster one connects (or starts) here.

    Raises :class:`~consentfetch.errors.ConfigError` when its package is
    missing or the engine cannot start.
    """
    if config.distributor == "spark":
        from .cluster import SparkDistributor
        return SparkDistributor(processes)
    if config.distributor == "ray":
        from .cluster import RayDistributor
        return RayDistributor(processes)
    return LocalDistributor(processes)


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
    stop = threading.Event()
    drain = threading.Thread(target=_drain, args=(updates, progress, stop), daemon=True)
    drain.start()
    executor = ProcessPoolExecutor(processes, mp_context=ctx, initializer=_init_worker,
                                   initargs=(updates, logging.getLogger().level, config,
                                             out.storage_options))
    try:
        yield from _submit_all(executor, shards, config, out, extra_fields, processes)
    except StopRequested:
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
            done, successes = updates.get(timeout=0.2)
        except queue.Empty:
            continue
        except (EOFError, OSError):
            return
        progress.update(done, successes)


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
                 storage_options: dict[str, Any] | None = None) -> None:
    global _worker_queue
    _die_with_parent()
    _worker_queue = updates
    logging.basicConfig(level=log_level or logging.WARNING,
                        format="%(asctime)s %(processName)s %(levelname)s %(name)s: %(message)s")
    if config is not None:
        preload_lists(config, storage_options)


def preload_lists(config: FetchConfig, storage_options: dict[str, Any] | None) -> None:
    """Load the run's opt-out/opt-in lists into this process's cache, with
    ``storage_options`` (so lists on s3:// with a custom endpoint load too).

    :func:`~consentfetch.pipeline.engine_for` then finds them already loaded.
    """
    for role, paths in (("opt-out", config.opt_out_lists), ("opt-in", config.opt_in_lists)):
        process_cache().lists(role, paths, storage_options)


class _QueueSink:
    """Batches progress in a worker and sends it at most every 0.25 s."""

    def __init__(self, updates: Any) -> None:
        self._updates = updates
        self._done = self._ok = 0
        self._last = time.monotonic()

    def __call__(self, done: int, successes: int) -> None:
        self._done += done
        self._ok += successes
        if time.monotonic() - self._last >= _FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if self._done:
            self._updates.put((self._done, self._ok))
        self._done = self._ok = 0
        self._last = time.monotonic()


def _worker_run(shard: ShardInput, config: FetchConfig, out: OutputDir,
                extra_fields: list[pa.Field]) -> ShardOutcome:
    sink = _QueueSink(_worker_queue) if _worker_queue is not None else None
    seed_policies(out, shard, config)  # the origin phase's policies, before any request
    try:
        outcome = run_shard(shard, config, out, extra_fields, sink)
        outcome.origin_rows = new_origin_rows(outcome.origin_rows, config)
        return outcome
    finally:
        if sink is not None:
            sink.flush()


# ----------------------------------------------------------------- cluster tasks

# A test hook: when this variable names a folder holding ``<shard>.arm``, the
# first attempt at that shard claims the file (an atomic rename) and fails
# midway, as the file says: ``exit N`` (the worker process dies, leaving partial
# files) or ``raise N`` (an exception), after N rows. Retries find no file.
FAULT_ENV = "CONSENTFETCH_TEST_FAULTS"


def cluster_task(shard: ShardInput, config: FetchConfig, out: OutputDir,
                 extra_fields: list[pa.Field]) -> ShardOutcome:
    """One shard on a cluster worker; safe to retry after any failure of an attempt."""
    preload_lists(config, out.storage_options)
    if shard.indices is None:
        done = _complete_outcome(out, shard.shard_id)
        if done is not None:  # an earlier attempt finished it; its result was lost
            return done
    out.remove_shard_leftovers(shard.shard_id, keep_complete=shard.indices is not None)
    seeded = seed_policies(out, shard, config)
    logger.debug("shard %d: %d origin policies from origins.parquet", shard.shard_id, seeded)
    outcome = run_shard(shard, config, out, extra_fields, _injected_fault(shard.shard_id))
    outcome.origin_rows = new_origin_rows(outcome.origin_rows, config)
    return outcome


def _complete_outcome(out: OutputDir, shard_id: int) -> ShardOutcome | None:
    name = f"{shard_name(shard_id)}_stats.json"
    if not out.exists(name) or out.shard_problem(shard_id) is not None:
        return None
    return ShardOutcome(shard_id, out.read_json(name))


def _injected_fault(shard_id: int) -> ProgressSink | None:
    folder = os.environ.get(FAULT_ENV)
    if not folder:
        return None
    armed = os.path.join(folder, f"{shard_name(shard_id)}.arm")
    fired = os.path.join(folder, f"{shard_name(shard_id)}.fired")
    try:
        os.rename(armed, fired)  # only one attempt can win this
    except OSError:
        return None
    with open(fired) as f:
        how, after = f.read().split()
    seen = 0

    def fault(done: int, successes: int) -> None:
        nonlocal seen
        seen += done
        if seen >= int(after):
            logger.warning("shard %d: injected fault (%s) after %d rows", shard_id, how, seen)
            if how == "exit":
                os._exit(17)
            raise RuntimeError(f"injected fault in shard {shard_id}")

    return fault
