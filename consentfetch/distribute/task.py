"""The shard task: what a worker runs for one shard, locally or on a cluster.

:func:`shard_task` runs a shard in a worker process: it seeds the process's
origin-policy cache from ``origins.parquet`` (the origin phase's results,
before any request), runs the shard pipeline
(:func:`~consentfetch.shardloop.run_shard`) and sends back only the origin
files it fetched itself. :func:`shard_stream` does the same for a stream of
shards on one loop, two at once when the older cannot use every worker
(:class:`~consentfetch.shardloop.ShardLoop`): how this machine's processes
run theirs.

On a cluster (:mod:`~consentfetch.distribute.cluster`) a shard is the unit of
work the engine retries; :func:`cluster_task` makes a retry safe: it removes
what a failed attempt left of its shard before writing, and keeps a shard an
earlier attempt completed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncGenerator
from typing import Any

import pyarrow as pa

from ..config import FetchConfig
from ..layout import shard_name, stats_name
from ..pipeline import ProgressSink, ShardOutcome
from ..progress import HostWait
from ..reader import ShardInput
from ..shardloop import ShardLoop, ShardSource, run_shard
from ..workercache import process_cache
from ..writer import OutputDir
from .originphase import new_origin_rows, seed_policies

logger = logging.getLogger(__name__)

# A test hook: when this variable names a folder holding ``<shard>.arm``, the
# first attempt at that shard claims the file (an atomic rename) and fails
# midway, as the file says: ``exit N`` (the worker process dies, leaving partial
# files) or ``raise N`` (an exception), after N rows. Retries find no file.
FAULT_ENV = "CONSENTFETCH_TEST_FAULTS"


def preload_lists(config: FetchConfig, storage_options: dict[str, Any] | None) -> None:
    """Load the run's opt-out/opt-in lists into this process's cache, with
    ``storage_options`` (so lists on s3:// with a custom endpoint load too).

    :func:`~consentfetch.pipeline.engine_for` then finds them already loaded.
    """
    for role, paths in (("opt-out", config.opt_out_lists), ("opt-in", config.opt_in_lists)):
        process_cache().lists(role, paths, storage_options)


def shard_task(shard: ShardInput, config: FetchConfig, out: OutputDir,
               extra_fields: list[pa.Field], sink: ProgressSink | None) -> ShardOutcome:
    """One shard in a worker process, its origin policies seeded from origins.parquet."""
    _seed(out, shard, config)
    return _trimmed(run_shard(shard, config, out, extra_fields, sink), config)


def _seed(out: OutputDir, shard: ShardInput, config: FetchConfig) -> None:
    """Seed this process's policy cache for ``shard`` from origins.parquet (before any
    request), and log what that took."""
    started = time.monotonic()
    seeded = seed_policies(out, shard, config)
    logger.debug("shard %d: %d origin policies from origins.parquet in %.2f s",
                 shard.shard_id, seeded, time.monotonic() - started)


def _trimmed(outcome: ShardOutcome, config: FetchConfig) -> ShardOutcome:
    """``outcome`` sending back only the origin files its shard fetched itself."""
    outcome.origin_rows = new_origin_rows(outcome.origin_rows, config)
    return outcome


async def shard_stream(next_shard: ShardSource, config: FetchConfig, out: OutputDir,
                       extra_fields: list[pa.Field], progress: ProgressSink | None, *,
                       seed: bool = True) -> AsyncGenerator[ShardOutcome, None]:
    """:func:`shard_task` for every shard ``next_shard`` gives, on this event loop,
    up to two at once; yields each outcome when its shard is complete.
    ``seed=False``: no policies from origins.parquet (the run's only process,
    whose cache already holds what its earlier shards fetched)."""
    async with ShardLoop(config, out, extra_fields) as loop:
        async def one(shard: ShardInput) -> ShardOutcome:
            if not seed:
                return await loop.run(shard, progress)
            _seed(out, shard, config)
            return _trimmed(await loop.run(shard, progress), config)

        async with contextlib.aclosing(loop.serve(next_shard, one)) as outcomes:
            async for outcome in outcomes:
                yield outcome


def cluster_task(shard: ShardInput, config: FetchConfig, out: OutputDir,
                 extra_fields: list[pa.Field]) -> ShardOutcome:
    """One shard on a cluster worker; safe to retry after any failure of an attempt."""
    preload_lists(config, out.storage_options)
    if shard.indices is None:
        done = _complete_outcome(out, shard.shard_id)
        if done is not None:  # an earlier attempt finished it; its result was lost
            return done
    out.remove_shard_leftovers(shard.shard_id, keep_complete=shard.indices is not None)
    return shard_task(shard, config, out, extra_fields, _injected_fault(shard.shard_id))


def _complete_outcome(out: OutputDir, shard_id: int) -> ShardOutcome | None:
    name = stats_name(shard_id)
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

    def fault(done: int, successes: int, waiting: HostWait | None = None) -> None:
        nonlocal seen
        seen += done
        if seen >= int(after):
            logger.warning("shard %d: injected fault (%s) after %d rows", shard_id, how, seen)
            if how == "exit":
                os._exit(17)
            raise RuntimeError(f"injected fault in shard {shard_id}")

    return fault
