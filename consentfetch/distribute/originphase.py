"""The origin phase: every origin's consent files, fetched once for the whole run.

When a run has more than one worker (``--processes`` above 1, or a Spark or
Ray cluster), each worker would otherwise fetch robots.txt, ai.txt and
tdmrep.json for every origin it meets: once per process, per origin. Instead
the run starts with a phase over the distinct origins of the input:

1. the driver streams the input once and collects its distinct origins
   (scheme + host + port), skipping URLs an opt-out list already refuses (they
   are never requested, so neither is their robots.txt) and origins whose
   files ``origins.parquet`` already holds, fresh, from an earlier attempt;
2. the origins are fetched in batches, in-process or as tasks on the
   cluster (:func:`fetch_origin_batch`), through the same client, limits and
   interpreters as the shards use;
3. the results, bodies included, go to ``origins.parquet`` as parts of at
   most a few thousand rows each (the driver holds no more), every part
   sorted by origin in small row groups;
4. every shard task reads the rows of its own origins from those parts
   and seeds its process's origin-policy cache with them before any request
   (:func:`seed_policies`): a process indexes each part once (which origins
   it holds, :class:`~consentfetch.workercache.OriginIndex`), so a shard opens
   only the parts holding its origins, and in them reads only the row groups
   whose statistics may hold them.

An origin met only as a redirect target is not in the input: a task fetches
its files on demand, once per worker process, as a single-process run does.

RSL licences named by robots.txt ``License`` lines are fetched here too, once
each, and recorded in ``origins.parquet``; the shard tasks do not yet seed
their licence cache from those rows, so each worker process fetches a licence
it needs once more (licences named by ``Link`` headers are met only by the
shards, and fetched there).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow.compute as pc
from yarl import URL

from .. import pipeline
from ..config import FetchConfig
from ..consent.engine import ConsentEngine, Permits
from ..consent.origins import (
    CACHE_SECONDS,
    FileKind,
    OriginPolicy,
    origin_file_from_row,
    origin_of,
    policy_from_files,
)
from ..net.client import parse_http_url
from ..reader import ShardInput
from ..workercache import OriginIndex, PolicyView, process_cache
from ..writer import OutputDir

logger = logging.getLogger(__name__)

ORIGIN_BATCH = 256  # origins per task of a distributed origin phase


def _origins_of_rows(shard: ShardInput) -> Iterator[tuple[str, URL]]:
    for row in shard.rows:
        if row.error:
            continue
        url = parse_http_url(row.url)
        if isinstance(url, URL):
            yield origin_of(url), url


def collect_origins(shards: Iterable[ShardInput], engine: ConsentEngine) -> dict[str, str]:
    """The distinct origins of ``shards``: origin → a base URL to fetch its files from.

    URLs the opt-out lists refuse are skipped: they are never requested. Memory
    grows with the number of distinct origins, not with the input.
    """
    bases: dict[str, str] = {}
    for shard in shards:
        for origin, url in _origins_of_rows(shard):
            if origin in bases or engine.check_url(str(url), Permits()) is not None:
                continue
            bases[origin] = str(url.origin())
    return bases


def policy_from_rows(origin: str, rows: dict[str, dict[str, Any]],
                     config: FetchConfig) -> OriginPolicy | None:
    """The origin policy the snapshot ``rows`` (kind → row) stand for, or None."""
    files = {record.kind: record for record in map(origin_file_from_row, rows.values())}
    return policy_from_files(origin, files, robots=config.enabled("robots_txt"),
                             ai_txt=config.enabled("ai_txt"), tdmrep=config.enabled("tdmrep"))


def batches(items: list[str], parallelism: int, size: int = ORIGIN_BATCH) -> list[list[str]]:
    """``items`` cut into batches of at most ``size``, and into at least ``parallelism``."""
    if not items:
        return []
    per = max(1, min(size, -(-len(items) // max(1, parallelism))))
    return [items[i:i + per] for i in range(0, len(items), per)]


def fetch_origin_batch(bases: list[str], config: FetchConfig) -> list[dict[str, Any]]:
    """Fetch the consent files of the origins of ``bases``: their origins.parquet rows.

    The task of the origin phase; blocks until every origin is loaded.
    """
    started = time.monotonic()
    rows = asyncio.run(_fetch_all(bases, config))
    logger.debug("origin phase: %d origin(s) in %.1f s", len(bases),
                 time.monotonic() - started)
    return rows


async def _fetch_all(bases: list[str], config: FetchConfig) -> list[dict[str, Any]]:
    async with pipeline.make_client(config) as client:
        policies = pipeline.origin_policies(config, client, keep_bodies=True)
        licences = pipeline.licence_fetcher(config, client, keep_bodies=True)
        # Only which License lines apply is asked of it: no lists, no crawler tokens.
        engine = ConsentEngine(token=config.user_agent_token, profile=config.consent,
                               ignore=config.ignore, ai_tokens=())
        todo = iter(bases)

        async def worker() -> None:
            for base in todo:
                policy = await policies.get(URL(base))
                await licences.get_all(engine.robots_licence_urls(policy))

        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, min(config.concurrency, len(bases)))):
                group.create_task(worker())
    used = [*policies.used.values(), *licences.used.values()]
    return [record.to_row() for record in used]


def seed_policies(out: OutputDir, shard: ShardInput, config: FetchConfig) -> int:
    """Fill this process's origin-policy cache for ``shard`` from ``origins.parquet``.

    Only the shard's origins not already cached (or expired) are read. Returns
    how many policies were added. Origins the file lacks, or holds without
    their bodies, are left to be fetched on demand.
    """
    cache = shard_policies(config)
    now = time.monotonic()
    wanted = set()
    for origin, _ in _origins_of_rows(shard):
        cached = cache.get(origin)
        if cached is None or now - cached.loaded_at >= CACHE_SECONDS:
            wanted.add(origin)
    if not wanted:
        return 0
    grouped: dict[str, dict[str, dict[str, Any]]] = {}
    for part, origins, groups in _part_index(out).parts_for(wanted):  # oldest first
        found = out.read_rows(part, "origin", origins) if groups is None \
            else out.read_groups(part, groups, "origin", origins)
        grouped.update(_rows_by_origin(found))  # the latest fetch of an origin's files wins
    added = 0
    for origin, rows in grouped.items():
        policy = policy_from_rows(origin, rows, config)
        if policy is not None:
            cache.seed(origin, _without_bodies(policy, config))
            added += 1
    return added


def _part_index(out: OutputDir) -> OriginIndex:
    """This process's index of ``out``'s origin parts, the parts added since brought in:
    each part's origin column is read once per process, not once per shard."""
    parts = out.origin_parts()
    index = process_cache().origin_index(out.url, parts)
    for part in parts:
        if part not in index:
            index.add(part, *_part_origins(out, part))
    return index


def _part_origins(out: OutputDir, part: str) -> tuple[list[str], list[str] | None]:
    """The origins whose own files a part holds (licences apart), and the origin
    of each of its row groups' first rows (None if the part is not sorted by
    origin, as an older run's single file may not be)."""
    table, sizes = out.read_columns(part, ["origin", "kind"])
    column: list[str] = table.column("origin").to_pylist()
    firsts: list[str] | None = None
    if all(a <= b for a, b in itertools.pairwise(column)):
        firsts = [column[start] for start in itertools.accumulate([0, *sizes[:-1]])]
    own = table.filter(pc.not_equal(table.column("kind"), str(FileKind.LICENCE)))
    origins: list[str] = pc.unique(own.column("origin")).to_pylist()
    return origins, firsts


def _rows_by_origin(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Origin-file ``rows`` of one part by origin, then kind (licences apart: they are
    not an origin's own files, and are fetched on demand)."""
    grouped: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        if row["kind"] != FileKind.LICENCE:
            grouped.setdefault(row["origin"], {})[row["kind"]] = row
    return grouped


def shard_policies(config: FetchConfig) -> PolicyView:
    """The part of this process's policy cache the shards of ``config`` use."""
    return process_cache().policy_view(config, keep_bodies=config.save_consent_files)


def _without_bodies(policy: OriginPolicy, config: FetchConfig) -> OriginPolicy:
    """``policy`` less the file bodies a shard does not keep (they are parsed already)."""
    if config.save_consent_files:
        return policy
    files = {kind: dataclasses.replace(f, body=None) for kind, f in policy.files.items()}
    return dataclasses.replace(policy, files=files)


def new_origin_rows(rows: list[dict[str, Any]], config: FetchConfig) -> list[dict[str, Any]]:
    """``rows`` less those of policies seeded from origins.parquet and still in use,
    so a shard sends back only the origin files it fetched itself."""
    cache = shard_policies(config)
    return [row for row in rows
            if row["kind"] == FileKind.LICENCE or not cache.seeded(row["origin"])]


def fresh_origins(out: OutputDir, origins: set[str], config: FetchConfig) -> set[str]:
    """Those of ``origins`` whose rows in origins.parquet can stand in for a fetch
    (bodies kept, not stale).

    Read one part at a time, oldest first, so memory holds one part's rows of
    ``origins`` at most: an origin is fresh when the latest part holding its
    files says so (a fetch writes all of an origin's files to one part).
    """
    fresh: set[str] = set()
    if not origins:
        return fresh
    for part in out.origin_parts():
        grouped = _rows_by_origin(row for row in out.iter_rows(part) if row["origin"] in origins)
        for origin, rows in grouped.items():
            if policy_from_rows(origin, rows, config) is not None:
                fresh.add(origin)
            else:
                fresh.discard(origin)
    return fresh
