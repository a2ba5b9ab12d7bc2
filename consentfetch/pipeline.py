"""The one place that wires the stages together for a shard.

For every row of a shard, cheapest check first, stopping at the first denial
(the consent decisions themselves live in :mod:`consentfetch.consent.engine`):

    URL syntax → opt-out list → for every hop: address guard, origin files
    (robots.txt, AI-crawler inference, Content-Usage, ai.txt, tdmrep.json) →
    request → response headers (X-Robots-Tag, tdm-reservation, Content-Usage),
    before the body → body (byte cap) → in a thread, off the event loop:
    sha256, opt-out list by hash, embedded metadata (IPTC, C2PA), opt-in
    permission, then decode, checks, resize, encode → tar + audit row

Every row ends as exactly one :class:`~consentfetch.writer.RowResult`. The
shards of a process run on its event loop (:mod:`~consentfetch.shardloop`),
up to two at once, their rows handed to ``concurrency`` workers by per-host
schedulers; a shard's files become visible only when the whole shard is
written.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from multidict import CIMultiDictProxy
from yarl import URL

from .config import FetchConfig
from .consent import evidence as proof
from .consent.crawlers import load_ai_crawler_tokens
from .consent.decision import Denial, Evidence, Reason, Status, status_of, text_evidence
from .consent.engine import ConsentEngine, Permits
from .consent.origins import (
    MAX_ORIGIN_FILE_BYTES,
    Licence,
    Licences,
    LicenceStore,
    OriginPolicies,
    OriginPolicy,
    PolicyStore,
)
from .consent.robots import CrawlDelay
from .image import Box, ResizedImage, ResizeOptions, process_image, resize_options_from
from .net.client import Fetched, HttpClient, SmallFetch, parse_http_url
from .net.politeness import HostSlots
from .progress import HostWait
from .reader import InputRow
from .workercache import process_cache
from .writer import RowResult

logger = logging.getLogger(__name__)



class ProgressSink(Protocol):
    """Takes (rows done, successes) since the last call, and now and then the shard's
    hosts backing off; called from the shard's loop thread."""

    def __call__(self, done: int, successes: int, /, waiting: HostWait | None = None) -> None:
        ...



def engine_for(config: FetchConfig,
               storage_options: dict[str, Any] | None = None) -> ConsentEngine:
    """The consent engine a run's configuration asks for; its lists (read with
    ``storage_options``) come from this process's cache."""
    lists = process_cache().lists
    return ConsentEngine(
        token=config.user_agent_token, profile=config.consent, ignore=config.ignore,
        opt_out=lists("opt-out", config.opt_out_lists, storage_options),
        opt_in=lists("opt-in", config.opt_in_lists, storage_options),
        ai_tokens=load_ai_crawler_tokens(config.ai_crawler_tokens))


# Response headers that carry consent signals (shown by ``consentfetch check``).
CONSENT_HEADERS = ("X-Robots-Tag", "tdm-reservation", "tdm-policy", "Content-Usage",
                   "Link", "Content-Type", "Content-Length")


@dataclass
class Observation:
    """What one URL's processing met: the request hops and the judged headers."""

    hops: list[str] = field(default_factory=list)
    headers: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Flights:
    """The single-flight loads of one event loop, shared by the shards it runs at once,
    so an origin (or licence) two of them meet together is fetched once."""

    policies: dict[str, asyncio.Future[OriginPolicy]] = field(default_factory=dict)
    licences: dict[str, asyncio.Future[Licence]] = field(default_factory=dict)


@dataclass
class ShardOutcome:
    """What a finished shard reports back to the distributor (picklable)."""

    shard_id: int
    stats: dict[str, Any]
    origin_rows: list[dict[str, Any]] = field(default_factory=list)


def origin_policies(config: FetchConfig, client: HttpClient, *,
                    cache: PolicyStore | None = None, keep_bodies: bool,
                    inflight: dict[str, asyncio.Future[OriginPolicy]] | None = None,
                    ) -> OriginPolicies:
    """Origin-file loading for this run's checks, through ``client`` and its host slots."""
    async def fetch(url: URL) -> Any:  # a SmallFetch
        async with client.slots.slot(url.host or ""):
            return await client.fetch_small(url, max_bytes=MAX_ORIGIN_FILE_BYTES)

    return OriginPolicies(fetch, cache=cache, robots=config.enabled("robots_txt"),
                          ai_txt=config.enabled("ai_txt"), tdmrep=config.enabled("tdmrep"),
                          keep_bodies=keep_bodies, inflight=inflight)


def licence_fetcher(config: FetchConfig, client: HttpClient, *,
                    cache: LicenceStore | None = None, keep_bodies: bool,
                    inflight: dict[str, asyncio.Future[Licence]] | None = None) -> Licences:
    """RSL licence loading through ``client``, with the origin files' limits and slots.

    A licence named by a response's ``Link`` header is fetched while that hop
    holds its host's slot: on the same host it goes out under that slot;
    elsewhere the wait for the other host's slot is bounded by ``--timeout``.
    """
    async def fetch(url: URL, held_host: str | None) -> SmallFetch:
        host = url.host or ""
        async with contextlib.AsyncExitStack() as stack:
            if held_host is None:
                await stack.enter_async_context(client.slots.slot(host))
            elif held_host != host:
                try:  # another host's slot is held: never wait for this one unbounded
                    async with asyncio.timeout(config.timeout):
                        await stack.enter_async_context(client.slots.slot(host))
                except TimeoutError:
                    return SmallFetch(url, None, error=Denial(
                        Reason.TIMEOUT, f"no request slot for {host} within "
                                        f"{config.timeout:g} s"))
            return await client.fetch_small(url, max_bytes=MAX_ORIGIN_FILE_BYTES)
        raise AssertionError("unreachable")  # mypy: AsyncExitStack may swallow exceptions

    return Licences(fetch, cache=cache, keep_bodies=keep_bodies, inflight=inflight)


class _Shard:
    """The per-shard context: client, origin policies, consent engine, image pool."""

    def __init__(self, config: FetchConfig, client: HttpClient, pool: ThreadPoolExecutor,
                 storage_options: dict[str, Any] | None = None, *,
                 policy_cache: PolicyStore | None = None,
                 licence_cache: LicenceStore | None = None,
                 flights: Flights | None = None) -> None:
        """``policy_cache``/``licence_cache``: where origin policies and licences are
        kept (default: this process's caches, shared by the shards of a run; a
        recheck passes its own, so every origin's files are fetched anew).
        ``flights``: the loads under way, shared by the shards of one event loop."""
        flights = flights or Flights()
        self.config = config
        self.client = client
        self.pool = pool
        self.engine = engine_for(config, storage_options)
        if policy_cache is None:
            policy_cache = process_cache().policy_view(
                config, keep_bodies=config.save_consent_files)
        self.policies = origin_policies(config, client, cache=policy_cache,
                                        keep_bodies=config.save_consent_files,
                                        inflight=flights.policies)
        self.licences = licence_fetcher(
            config, client, cache=licence_cache if licence_cache is not None
            else process_cache().licence_view(config), keep_bodies=config.save_consent_files,
            inflight=flights.licences)
        self.resize: ResizeOptions = resize_options_from(config)
        self.budget = process_cache().decode_budget(config.max_decoded_bytes)
        self.token = config.user_agent_token

    async def policy(self, url: URL) -> OriginPolicy:
        """The origin policy of ``url``."""
        return await self.policies.get(url)

    def pace(self, policy: OriginPolicy, url: URL) -> Denial | None:
        """Keep to the host's robots.txt Crawl-delay: its slot spaces our requests by it.

        A delay above ``--max-crawl-delay`` is not waited for, and the site asks
        us not to request faster, so ``url`` is not requested:
        ``crawl_delay_too_long``, with the line as evidence.
        """
        if policy.robots is None or not self.config.enabled("robots_txt"):
            return None
        delay = policy.robots.crawl_delay_rule(self.token)
        if delay is None:
            return None
        cap = self.config.max_crawl_delay
        if delay.seconds > cap:
            return Denial(Reason.CRAWL_DELAY_TOO_LONG,
                          crawl_delay_evidence(policy, url, delay, cap))
        self.client.slots.set_delay(url.host or "", delay.seconds)
        return None

    async def check_hop(self, hop: URL, permits: Permits) -> tuple[OriginPolicy, Denial | None]:
        """The origin phase for one hop: its policy, and its files' (and licences')
        verdict, Crawl-delay included."""
        policy = await self.policy(hop)
        licences = await self.licences.get_all(self.engine.robots_licence_urls(policy))
        return policy, self.engine.check_origin(policy, hop, permits, licences) \
            or self.pace(policy, hop)

    async def judge_headers(self, policy: OriginPolicy | None, final: URL,
                            headers: CIMultiDictProxy[str], permits: Permits) -> Denial | None:
        """The header phase: the response's own signals, then the RSL licences its
        ``Link`` headers name (fetched while this hop's slot is held)."""
        denial = self.engine.check_headers(policy, final, headers, permits)
        urls = self.engine.link_licence_urls(final, headers)
        if denial is not None or not urls:
            return denial
        licences = await self.licences.get_all(urls, held_host=final.host or "")
        return self.engine.check_headers(policy, final, headers, permits, licences)

    async def process(self, row: InputRow, *, url: URL | Denial | None = None,
                      seen: Observation | None = None, decide_only: bool = False,
                      fetched_cb: Callable[[], None] | None = None) -> RowResult:
        """One row through every stage. ``url`` is the row's URL if the caller has
        already parsed it (:func:`parse_row_url`); ``decide_only`` stops after the
        consent checks (no resize); ``seen`` collects the hops and headers met;
        ``fetched_cb`` is called once the row's requests are over."""
        if url is None:
            url = parse_row_url(row)
        if isinstance(url, Denial):
            return _denied(url)
        permits = Permits()
        denial = self.engine.check_url(str(url), permits)
        if denial:
            return _denied(denial)

        # The policy of the hop being requested: the headers of its response are
        # judged with it (held here, so a cache eviction cannot take it away).
        hop_policy: list[OriginPolicy] = []

        seen = seen if seen is not None else Observation()

        async def check_hop(hop: URL) -> Denial | None:
            seen.hops.append(str(hop))
            policy, denial = await self.check_hop(hop, permits)
            hop_policy[:] = [policy]
            return denial

        async def check_headers(final: URL, headers: CIMultiDictProxy[str]) -> Denial | None:
            seen.headers = {name: headers.getall(name) for name in CONSENT_HEADERS
                            if name in headers}
            policy = hop_policy[0] if hop_policy else None
            return await self.judge_headers(policy, final, headers, permits)

        fetched = await self.client.fetch_image(url, check_hop=check_hop,
                                                check_headers=check_headers)
        if fetched_cb is not None:
            fetched_cb()
        if isinstance(fetched, Denial):
            return _denied(fetched)
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self.pool, self._inspect, fetched, permits,
                                                row.expected_hash, row.boxes, decide_only)
        except Exception as exc:  # a body no check foresaw: this row's failure only
            return unforeseen(row, exc, Reason.DECODE_ERROR, http_status=fetched.http_status)
        return dataclasses.replace(result, body_size=len(fetched.body),
                                   redirects=redirects_of(str(url), seen.hops))

    def _inspect(self, fetched: Fetched, permits: Permits, expected_hash: str | None,
                 boxes: Sequence[Box], decide_only: bool) -> RowResult:
        """Body checks, then decode and resize: CPU work, run in a thread."""
        digest = hashlib.sha256(fetched.body).hexdigest()
        mime = fetched.headers.get("Content-Type")
        denial = self.engine.check_body(fetched.body, digest, mime, permits) \
            or self.engine.check_permission(permits) \
            or self._verify_hash(fetched.body, digest, expected_hash)
        if denial is None and decide_only:
            return RowResult(status=Status.SUCCESS, http_status=fetched.http_status,
                             sha256=digest)
        if denial is None:
            image = process_image(fetched.body, self.resize, budget=self.budget, boxes=boxes)
            if not isinstance(image, Denial):
                blurred = image.blurred if self.config.bbox_col else None
                return _success(image, fetched.http_status, digest, blurred)
            denial = image
        return _denied(denial, http_status=fetched.http_status, sha256=digest)


    def _verify_hash(self, body: bytes, sha256: str, expected: str | None) -> Denial | None:
        """``--verify-hash``: the body must have the digest the input row gives (rows
        without one are not checked); otherwise the URL now serves other bytes."""
        if expected is None or self.config.verify_hash is None:
            return None
        algorithm = self.config.hash_algorithm
        known = {hashlib.sha256().name: sha256}  # computed already, for every body
        actual = known.get(algorithm) or hashlib.new(algorithm, body).hexdigest()
        if actual == expected:
            return None
        return Denial(Reason.HASH_MISMATCH, f"--verify-hash {self.config.hash_column}: expected "
                      f"{algorithm} {expected}, the body has {actual}: the URL serves other "
                      "bytes now; they are not kept")


async def process_confined(ctx: _Shard, row: InputRow, url: URL | Denial,
                           fetched_cb: Callable[[], None] | None = None) -> RowResult:
    """:meth:`_Shard.process`, with whatever it raises confined to the row.

    An exception no stage foresaw (a response or input row nothing was written
    for) becomes the row's ``connection_error`` failure: no byte of the image is
    kept, the shard and the run go on. Cancellation, Ctrl-C and SystemExit are
    not ``Exception`` and still end the shard.
    """
    try:
        return await ctx.process(row, url=url, fetched_cb=fetched_cb)
    except Exception as exc:
        return unforeseen(row, exc, Reason.CONNECTION_ERROR)


def unforeseen(row: InputRow, exc: Exception, reason: Reason, *,
               http_status: int | None = None) -> RowResult:
    """The failed row of an unexpected exception, logged once with its traceback."""
    logger.error("unexpected error for %r, recorded as %s: %s: %s", row.url, reason,
                 type(exc).__name__, exc, exc_info=exc)
    evidence = text_evidence(reason, f"unexpected error: {type(exc).__name__}: {exc}")
    return RowResult(status=status_of(reason), reason=str(reason), http_status=http_status,
                     evidence=evidence.text, proof=evidence)


_SHOWN_VALUE = 40  # characters of a Crawl-delay value quoted in evidence


def redirects_of(url: str, hops: Sequence[str]) -> list[str] | None:
    """The URLs the last attempt at ``url`` was redirected to, in order (the last one
    served the body), or None without a redirect. ``hops`` lists every hop of every
    attempt; the last attempt is the one that starts at the last ``url``."""
    start = max((i for i, hop in enumerate(hops) if hop == url), default=0)
    return list(hops[start + 1:]) or None


def crawl_delay_evidence(policy: OriginPolicy, url: URL, delay: CrawlDelay,
                         cap: float) -> Evidence:
    """Why a host's URL was not requested: its Crawl-delay line, the cap, the way out."""
    return proof.crawl_delay(policy.robots_file, url, delay, cap, _shown(delay.text),
                             _shown(delay.group or "*"))


def _shown(text: str) -> str:
    """``text`` as written, cut after :data:`_SHOWN_VALUE` characters."""
    if len(text) <= _SHOWN_VALUE:
        return text
    return f"{text[:_SHOWN_VALUE]}… ({len(text)} characters)"


def _denied(denial: Denial, *, http_status: int | None = None,
            sha256: str | None = None) -> RowResult:
    return RowResult(status=denial.status, reason=str(denial.reason), evidence=denial.evidence,
                     proof=denial.proof, http_status=denial.http_status or http_status,
                     sha256=sha256)


def _success(image: ResizedImage, http_status: int, sha256: str,
             blurred: int | None = None) -> RowResult:
    return RowResult(status=Status.SUCCESS, http_status=http_status, sha256=sha256,
                     width=image.width, height=image.height,
                     original_width=image.original_width,
                     original_height=image.original_height, image=image.data,
                     blurred=blurred)


def make_client(config: FetchConfig) -> HttpClient:
    """An HTTP client with the run's limits and a fresh per-host politeness state."""
    slots = HostSlots(config.per_host_concurrency, min_delay=config.min_host_delay,
                      max_failures=config.max_host_failures, backoff_base=config.retry_backoff)
    return HttpClient(
        user_agent=config.user_agent, timeout=config.timeout, max_bytes=config.max_bytes,
        max_redirects=config.max_redirects, retries=config.retries,
        concurrency=config.concurrency, slots=slots,
        allow_private_networks=config.allow_private_networks,
        allowed_networks=config.allowed_networks, max_retry_after=config.max_retry_after,
        resolver=config.resolver, ca_file=config.ca_file)


def parse_row_url(row: InputRow) -> URL | Denial:
    """The row's URL, or the ``invalid_url`` denial of a malformed row or URL."""
    if row.error:
        return Denial(Reason.INVALID_URL, row.error)
    try:
        return parse_http_url(row.url)
    except Exception as exc:  # the input row's own fault, whatever it holds
        logger.error("unexpected error parsing %r", row.url, exc_info=exc)
        return Denial(Reason.INVALID_URL, f"unparseable URL: {type(exc).__name__}: {exc}")


def run_columns(config: FetchConfig) -> dict[str, str | None]:
    """The per-run audit columns: how this dataset's consent was decided."""
    return {"consent_profile": config.consent,
            "ignored_checks": ",".join(sorted(config.ignore)) or None}
