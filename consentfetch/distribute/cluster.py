"""Spark and Ray distributors: the local shard task, run on a cluster.

Both run :func:`~consentfetch.distribute.task.cluster_task` once per shard (and
:func:`~consentfetch.distribute.originphase.fetch_origin_batch` once per batch of
origins) and leave retries to the engine: a failed task is run again, by
Spark up to ``spark.task.maxFailures`` times (local masters:
``local[N,F]``), by Ray up to :data:`TASK_RETRIES` more times, whether the
worker raised or died. A shard is complete only when its stats file is
written (see :mod:`~consentfetch.writer`), so a retried or resumed run keeps
the exactly-once promise of a local one.

The driver never holds the input: shards are read lazily and submitted in
bounded batches, at most ``2 × parallelism`` shards in flight (Spark: jobs of
``parallelism`` shards, two at a time; Ray: a window of task references).

Per-host politeness: ``--per-host-concurrency`` is split over the tasks that
run at once (:func:`task_config`), each task getting ``ceil(N / tasks)`` but at
least 1. See README.md, "Running on a cluster".
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import math
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

import pyarrow as pa

from ..config import FetchConfig
from ..errors import ConfigError
from ..pipeline import ShardOutcome
from ..progress import Progress
from ..reader import ShardInput
from ..writer import OutputDir
from .originphase import fetch_origin_batch
from .task import cluster_task

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_R = TypeVar("_R")

TASK_RETRIES = 3  # Ray: extra attempts per task (Spark: spark.task.maxFailures - 1)
LOCAL_TASK_ATTEMPTS = 4  # a local Spark master started here: local[N, 4], as a cluster's default
JAVA_HINT = ("Spark needs Java 17 or later (Debian: apt-get install default-jre-headless) "
             "and JAVA_HOME or java on the PATH")


def task_config(config: FetchConfig, tasks: int) -> FetchConfig:
    """The configuration a task runs with: the per-host limit split over ``tasks``.

    ``--per-host-concurrency`` is the cluster-wide budget: each of the tasks
    that run at once gets ``ceil(N / tasks)``, at least 1. Nothing else changes
    (the per-host limit does not shape the output).
    """
    per_task = max(1, math.ceil(config.per_host_concurrency / max(1, tasks)))
    return dataclasses.replace(config, per_host_concurrency=per_task)


def _progress(progress: Progress, outcome: ShardOutcome) -> ShardOutcome:
    progress.update(int(outcome.stats.get("count", 0)), int(outcome.stats.get("successes", 0)))
    return outcome


class SparkDistributor:
    """Shards as Spark tasks, on the active SparkContext or a local one started here."""

    name = "spark"
    shared_origins = True

    def __init__(self, processes: int) -> None:
        try:
            from pyspark import SparkConf, SparkContext
        except ImportError as exc:
            raise ConfigError("--distributor spark needs pyspark: "
                              "pip install 'consentfetch[spark]'") from exc
        conf = SparkConf()
        if not conf.contains("spark.master"):
            conf.setMaster(f"local[{max(1, processes)},{LOCAL_TASK_ATTEMPTS}]")
            # Local workers run this interpreter, the one consentfetch is installed in
            # (PySpark reads the worker's interpreter from this variable only).
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            # Everything is on this machine: keep Spark's own traffic on loopback.
            conf.setIfMissing("spark.driver.host", "127.0.0.1")
            conf.setIfMissing("spark.driver.bindAddress", "127.0.0.1")
        conf.setIfMissing("spark.app.name", "consentfetch")
        try:
            self.sc = SparkContext.getOrCreate(conf)
        except Exception as exc:  # py4j and the JVM launcher raise plain Exceptions
            raise ConfigError(f"cannot start Spark: {exc}. {JAVA_HINT}") from exc
        spark_conf = self.sc.getConf()
        if (spark_conf.get("spark.speculation") or "false").lower() == "true":
            raise ConfigError("spark.speculation is on: Spark would run a shard twice at "
                              "once, racing on its files; set spark.speculation=false")
        cpus = int(spark_conf.get("spark.task.cpus") or 1)
        self.parallelism = max(1, self.sc.defaultParallelism // max(1, cpus))
        self._group = f"consentfetch-{uuid.uuid4().hex[:12]}"
        logger.info("spark: master %s, %d task(s) at once", self.sc.master, self.parallelism)

    def fetch_origins(self, batches: Iterable[list[str]],
                      config: FetchConfig) -> Iterator[list[dict[str, Any]]]:
        task = functools.partial(fetch_origin_batch, config=config)
        yield from self._map(batches, task, "consentfetch origin phase")

    def run_shards(self, shards: Iterable[ShardInput], config: FetchConfig, out: OutputDir,
                   extra_fields: list[pa.Field], progress: Progress) -> Iterator[ShardOutcome]:
        task = functools.partial(cluster_task, config=task_config(config, self.parallelism),
                                 out=out, extra_fields=extra_fields)
        for outcome in self._map(shards, task, "consentfetch shards"):
            yield _progress(progress, outcome)

    def _map(self, items: Iterable[_T], task: Callable[[_T], _R],
             description: str) -> Iterator[_R]:
        """``task`` over ``items``: jobs of ``parallelism`` items, two jobs in flight."""
        it = iter(items)
        batches = iter(lambda: list(itertools.islice(it, self.parallelism)), [])
        pending: set[Future[list[_R]]] = set()
        with ThreadPoolExecutor(2, thread_name_prefix="consentfetch-spark") as jobs:
            try:
                for batch in batches:
                    pending.add(jobs.submit(self._job, batch, task, description))
                    if len(pending) >= 2:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for future in done:
                            yield from future.result()
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield from future.result()
            except BaseException:
                self.sc.cancelJobGroup(self._group)
                raise

    def _job(self, batch: list[_T], task: Callable[[_T], _R], description: str) -> list[_R]:
        # Job groups are per thread (pinned threads), so it is set in the job's thread.
        self.sc.setJobGroup(self._group, description, interruptOnCancel=True)
        return self.sc.parallelize(batch, len(batch)).map(task).collect()

    def close(self) -> None:
        pass  # the SparkContext is left running for the caller's next job


class RayDistributor:
    """Shards as Ray tasks, on the connected Ray cluster or a local one started here."""

    name = "ray"
    shared_origins = True

    def __init__(self, processes: int) -> None:
        try:
            import ray as ray_module
        except ImportError as exc:
            raise ConfigError("--distributor ray needs ray: "
                              "pip install 'consentfetch[ray]'") from exc
        ray: Any = ray_module
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            # The cluster at RAY_ADDRESS if set, else a local one of --processes CPUs.
            local = {} if os.environ.get("RAY_ADDRESS") else {"num_cpus": max(1, processes)}
            ray.init(logging_level=logging.WARNING, **local)
            self._started = True
        self.parallelism = max(1, int(ray.cluster_resources().get("CPU", 1)))
        remote = ray.remote(max_retries=TASK_RETRIES, retry_exceptions=True, num_cpus=1)
        self._shard_task = remote(cluster_task)
        self._origin_task = remote(fetch_origin_batch)
        logger.info("ray: %d task(s) at once", self.parallelism)

    def fetch_origins(self, batches: Iterable[list[str]],
                      config: FetchConfig) -> Iterator[list[dict[str, Any]]]:
        config_ref = self._ray.put(config)
        yield from self._map(batches, lambda batch: self._origin_task.remote(batch, config_ref))

    def run_shards(self, shards: Iterable[ShardInput], config: FetchConfig, out: OutputDir,
                   extra_fields: list[pa.Field], progress: Progress) -> Iterator[ShardOutcome]:
        refs = [self._ray.put(v) for v in
                (task_config(config, self.parallelism), out, extra_fields)]
        for outcome in self._map(shards, lambda s: self._shard_task.remote(s, *refs)):
            yield _progress(progress, outcome)

    def _map(self, items: Iterable[Any], submit: Callable[[Any], Any]) -> Iterator[Any]:
        """Submit ``items``, at most ``2 × parallelism`` in flight; yield results as they come."""
        ray = self._ray
        pending: list[Any] = []
        try:
            for item in items:
                pending.append(submit(item))
                if len(pending) >= 2 * self.parallelism:
                    done, pending = ray.wait(pending, num_returns=1)
                    yield from ray.get(done)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield from ray.get(done)
        except BaseException:
            for ref in pending:
                ray.cancel(ref)
            raise

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
