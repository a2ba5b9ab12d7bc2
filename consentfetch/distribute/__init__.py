"""Where a run's work happens: this machine's processes, or a Spark or Ray cluster.

The run (:mod:`~consentfetch.run`) asks :func:`distributor_for` for a
:class:`Distributor` and hands it the shards; every distributor runs the same
pieces:

* :mod:`.local`: in this process, or over spawned worker processes;
* :mod:`.cluster`: Spark and Ray, whose engines retry a failed task;
* :mod:`.task`: the shard task a worker runs (:func:`~.task.shard_task`), and
  its retry-safe form for clusters (:func:`~.task.cluster_task`);
* :mod:`.originphase`: every origin's consent files fetched once for the whole
  run before the shards start (when more than one worker would otherwise
  fetch them each), and the shards' caches seeded from ``origins.parquet``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import pyarrow as pa

from ..config import FetchConfig
from ..pipeline import ShardOutcome
from ..progress import Progress
from ..reader import ShardInput
from ..writer import OutputDir
from .cluster import RayDistributor, SparkDistributor
from .local import LocalDistributor, StopRequested

__all__ = ["Distributor", "LocalDistributor", "RayDistributor", "SparkDistributor",
           "StopRequested", "distributor_for"]


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
        return SparkDistributor(processes)
    if config.distributor == "ray":
        return RayDistributor(processes)
    return LocalDistributor(processes)
