"""The one place that wires the stages together for a shard.

For every row of a shard, cheapest check first, stopping at the first denial:

    URL syntax → origin policy (robots.txt, per hop) → request → response
    headers (X-Robots-Tag, before the body) → body (byte cap) → decode,
    checks, resize, encode (in a thread, off the event loop) → tar + audit row

Every row ends as exactly one :class:`~consentfetch.writer.RowResult`. The
shard runs on its own asyncio event loop with ``concurrency`` workers; the
shard files become visible only when the whole shard is written.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from multidict import CIMultiDictProxy
from yarl import URL

from .config import FetchConfig
from .consent.decision import Denial, Reason, Status
from .consent.headers import check_x_robots_tag
from .consent.origins import (OriginPolicies, OriginPolicy, check_opt_in, check_robots,
                              origin_of)
from .image import ResizedImage, ResizeOptions, process_image, resize_options_from
from .net.client import Fetched, HttpClient, parse_http_url
from .reader import InputRow, ShardInput, compute_key
from .writer import OutputDir, RowResult, ShardWriter

logger = logging.getLogger(__name__)

# (rows done, successes) since the last call; called from the shard's loop thread.
ProgressSink = Callable[[int, int], None]

# Origin policies a worker process has already read, kept across its shards.
_PROCESS_POLICIES: dict[str, OriginPolicy] = {}


@dataclass
class ShardOutcome:
    """What a finished shard reports back to the distributor (picklable)."""

    shard_id: int
    stats: dict[str, Any]
    origin_rows: list[dict[str, Any]] = field(default_factory=list)


class _Shard:
    """The per-shard context: client, policies, image pool, writer."""

    def __init__(self, config: FetchConfig, client: HttpClient, pool: ThreadPoolExecutor) -> None:
        self.config = config
        self.client = client
        self.pool = pool
        self.policies = OriginPolicies(self._fetch_robots, cache=_PROCESS_POLICIES)
        self.resize: ResizeOptions = resize_options_from(config)
        self.strict = config.consent == "strict"
        self.token = config.user_agent_token

    async def _fetch_robots(self, url: URL) -> Any:
        async with self.client.slots.slot(url.host or ""):
            return await self.client.fetch_small(url, max_bytes=512_000)

    async def check_hop(self, url: URL) -> Denial | None:
        policy = await self.policies.get(url)
        denial = check_robots(policy, url, self.token)
        if denial is None and self.config.consent == "opt-in":
            denial = check_opt_in(policy, self.token)
        return denial

    def check_headers(self, url: URL, headers: CIMultiDictProxy[str]) -> Denial | None:
        verdict = check_x_robots_tag(headers.getall("X-Robots-Tag", []), self.token,
                                     strict=self.strict)
        if verdict.denied:
            return Denial(Reason.X_ROBOTS_TAG,
                          f"X-Robots-Tag: {verdict.header} ({verdict.directive})")
        return None

    def host_delay(self, url: URL) -> float:
        policy = _PROCESS_POLICIES.get(origin_of(url))
        if policy is None or policy.robots is None:
            return 0.0
        return policy.robots.crawl_delay(self.token) or 0.0

    async def process(self, row: InputRow) -> RowResult:
        if row.error:
            return _denied(Denial(Reason.INVALID_URL, row.error))
        url = parse_http_url(row.url)
        if isinstance(url, Denial):
            return _denied(url)
        fetched = await self.client.fetch_image(
            url, check_hop=self.check_hop, check_headers=self.check_headers,
            host_delay=self.host_delay)
        if isinstance(fetched, Denial):
            return _denied(fetched)
        return await self._resize(fetched)

    async def _resize(self, fetched: Fetched) -> RowResult:
        digest = hashlib.sha256(fetched.body).hexdigest()
        loop = asyncio.get_running_loop()
        image = await loop.run_in_executor(self.pool, process_image, fetched.body, self.resize)
        if isinstance(image, Denial):
            return _denied(image, http_status=fetched.http_status, sha256=digest)
        return _success(image, fetched.http_status, digest)


def _denied(denial: Denial, *, http_status: int | None = None,
            sha256: str | None = None) -> RowResult:
    return RowResult(status=denial.status, reason=str(denial.reason), evidence=denial.evidence,
                     http_status=denial.http_status or http_status, sha256=sha256)


def _success(image: ResizedImage, http_status: int, sha256: str) -> RowResult:
    return RowResult(status=Status.SUCCESS, http_status=http_status, sha256=sha256,
                     width=image.width, height=image.height,
                     original_width=image.original_width,
                     original_height=image.original_height, image=image.data)


async def _run_shard(shard: ShardInput, config: FetchConfig, out: OutputDir,
                     extra_fields: list[pa.Field], progress: ProgressSink | None) -> ShardOutcome:
    writer = ShardWriter(out, shard.shard_id, extra_fields, encode_format=config.encode_format,
                         save_caption=config.caption_col is not None)
    queue: asyncio.Queue[tuple[int, InputRow]] = asyncio.Queue()
    for item in enumerate(shard.rows):
        queue.put_nowait(item)
    try:
        with ThreadPoolExecutor(max_workers=_image_threads(),
                                thread_name_prefix="consentfetch-image") as pool:
            async with HttpClient(
                    user_agent=config.user_agent, timeout=config.timeout,
                    max_bytes=config.max_bytes, max_redirects=config.max_redirects,
                    retries=config.retries, retry_backoff=config.retry_backoff,
                    concurrency=config.concurrency,
                    per_host_concurrency=config.per_host_concurrency,
                    allow_private_networks=config.allow_private_networks) as client:
                ctx = _Shard(config, client, pool)

                async def worker() -> None:
                    while not queue.empty():
                        index, row = queue.get_nowait()
                        result = await ctx.process(row)
                        writer.add(compute_key(shard.shard_id, index, config.shard_size),
                                   row, result)
                        if progress is not None:
                            progress(1, int(result.status is Status.SUCCESS))

                workers = min(config.concurrency, max(1, len(shard.rows)))
                async with asyncio.TaskGroup() as group:
                    for _ in range(workers):
                        group.create_task(worker())
        stats = writer.commit()
    except BaseException:
        writer.abort()
        raise
    return ShardOutcome(shard.shard_id, stats, [f.to_row() for f in ctx.policies.used.values()])


def _image_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def run_shard(shard: ShardInput, config: FetchConfig, out: OutputDir,
              extra_fields: list[pa.Field], progress: ProgressSink | None = None) -> ShardOutcome:
    """Download, check, resize and write one shard; blocks until it is complete."""
    started = time.monotonic()
    outcome = asyncio.run(_run_shard(shard, config, out, extra_fields, progress))
    logger.debug("shard %d: %d rows in %.1f s", shard.shard_id, len(shard.rows),
                 time.monotonic() - started)
    return outcome
