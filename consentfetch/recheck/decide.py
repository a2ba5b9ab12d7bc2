"""``recheck_shards``: decide consent again, as of now, for the samples a run downloaded.

For every ``success`` row of every complete shard, in this order, stopping at
the first denial (the very checks a download makes, through
:class:`~consentfetch.pipeline._Shard`; nothing is decided here twice):

1. the opt-out lists, no network: URL, prefix and host, then the *stored*
   sha256 (the bytes in the dataset are the bytes that were downloaded);
2. the origin files of every origin the sample came through (its URL's, and
   each redirect hop's when the audit recorded them: ``redirects``), fetched
   anew once per origin per recheck, with the download's politeness, address
   guard and limits;
3. with ``headers=True``, one request per sample that reads the response
   headers and never the body (:meth:`HttpClient.fetch_headers`), judged as a
   download judges them; without it, the header phase sees no headers (so in
   ``standard`` a tdmrep.json reservation, which an image's own header would
   supersede, decides).

Embedded metadata is not read again: the same bytes carry the same metadata.
With ``headers=True`` a response that shows the URL now serves other bytes
makes the sample ``changed`` (:func:`changed_evidence`); it is never downloaded.
``--consent opt-in``: a recheck never decides ``no_opt_in``, since a
permission may have come from the body, which is not read again.

Memory is bounded by one batch of rows and the bounded caches of origin
policies and licences, whatever the size of the run.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ..audit.read import open_output
from ..config import FetchConfig
from ..consent.decision import Denial, Reason, Status
from ..consent.engine import Permits
from ..consent.origins import (
    LICENCE_CACHE_BYTES,
    POLICY_CACHE_BYTES,
    Licence,
    OriginPolicy,
)
from ..errors import OutputError
from ..layout import RUN_FILE, parquet_name, stats_name, temporary
from ..lru import BoundedCache
from ..net.client import HttpClient, parse_http_url
from ..net.politeness import HostScheduler
from ..pipeline import _Shard, make_client
from ..progress import Progress, ProgressView, view_of
from ..safetext import redact_userinfo
from ..writer import OutputDir, evidence_columns
from .settings import recheck_settings
from .table import (
    CHANGED,
    KEPT,
    RECHECK_SCHEMA,
    STATUSES,
    UNCHECKED,
    WITHDRAWN,
    recheck_file,
    recheck_folder,
    recheck_stamp,
    summary_file,
)

logger = logging.getLogger(__name__)

BATCH_ROWS = 2048  # success rows decided (and held) at once
# The audit columns a recheck reads; ``redirects``/``body_size`` are absent in older runs.
_COLUMNS = ("key", "url", "status", "sha256", "redirects", "body_size")
# HttpClient.sent keys → the request kinds of the summary
_KINDS = {"/robots.txt": "robots.txt", "/ai.txt": "ai.txt",
          "/.well-known/tdmrep.json": "tdmrep.json", "file": "licence",
          "HEAD": "headers_head", "GET": "headers_get"}


@dataclass(frozen=True)
class RecheckReport:
    """What a recheck found, and where it wrote it."""

    output_dir: str  # the folder holding rechecks/<stamp>/
    stamp: str
    counts: dict[str, int]  # by recheck status: success, disallowed, changed, ...
    reasons: dict[str, int]  # by reason code (withdrawn and unchecked samples)
    requests: dict[str, int]  # by kind: robots.txt, ai.txt, tdmrep.json, licence, headers_*
    origin_loads: int  # times an origin's files were fetched (once per origin, unless evicted)
    duration: float
    hops_rechecked: bool  # False: some shards predate the ``redirects`` column
    summary: dict[str, Any] = field(default_factory=dict)  # summary.json, as written

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def withdrawn(self) -> int:
        return self.counts.get(WITHDRAWN, 0)


def recheck_shards(output_dir: str, *, opt_out_lists: tuple[str, ...] | list[str] = (),
                   consent: str | None = None, ignore: tuple[str, ...] | list[str] | None = None,
                   headers: bool = False, output: str | None = None,
                   storage_options: dict[str, Any] | None = None,
                   progress: bool | ProgressView = False,
                   allow_private_networks: bool = False,
                   ca_file: str | None = None) -> RecheckReport:
    """Decide consent again, as of now, for the ``success`` samples of ``output_dir``.

    Uses the run's own settings from its run.json; ``consent``, ``ignore`` and
    ``opt_out_lists`` may tighten them (a looser value raises
    :class:`~consentfetch.errors.ConfigError`). ``headers=True`` also asks each
    sample's URL for its response headers (one request per sample, no body).
    Writes ``rechecks/<UTC stamp>/recheck.parquet`` and ``summary.json`` into
    ``output`` when given (the run is then only read: a read-only or remote
    copy can be rechecked), else into ``output_dir``; nothing else is changed.
    Raises :class:`~consentfetch.errors.OutputError` when ``output_dir`` is not
    a run. Per-sample problems never raise: they are rows.
    """
    source = open_output(output_dir, storage_options)
    if not source.exists(RUN_FILE):
        raise OutputError(f"{output_dir} holds no run.json: not an output folder of "
                          "consentfetch download")
    run = source.read_json(RUN_FILE)
    settings = recheck_settings(run if isinstance(run, dict) else {}, consent=consent,
                                ignore=ignore, opt_out_lists=tuple(opt_out_lists),
                                allow_private_networks=allow_private_networks,
                                ca_file=ca_file)
    dest = OutputDir(output, storage_options) if output is not None else source
    view = view_of(progress)
    job = _Recheck(source, dest, settings.config, headers, view)
    job.lists_missing = settings.lists_missing
    return asyncio.run(job.run())


def changed_evidence(headers: CIMultiDictProxy[str] | CIMultiDict[str], sha256: str | None,
                     body_size: int | None) -> str | None:
    """Why a response shows its URL now serves other bytes than the stored ones, or None.

    Only what identifies the bytes without reading them counts: a ``Repr-Digest``
    (RFC 9530) ``sha-256`` that differs from the stored sha256 (an equal one
    settles it: not changed); otherwise, for a response without a
    ``Content-Encoding``, a ``Content-Length`` that differs from the stored
    body's size. ETags are not compared: the audit never recorded them.
    """
    digest = _repr_sha256(headers.getall("Repr-Digest", []))
    if digest is not None and sha256:
        if digest == sha256.lower():
            return None
        return f"Repr-Digest sha-256 is {digest} now; the stored sample's sha256 is {sha256}"
    length = headers.get("Content-Length")
    encoded = headers.get("Content-Encoding", "identity").strip().lower() != "identity"
    if body_size is None or length is None or encoded or not length.strip().isdigit():
        return None
    if int(length) == body_size:
        return None
    return (f"Content-Length is {int(length)} bytes now; the stored sample was downloaded "
            f"as {body_size} bytes")


def _repr_sha256(values: list[str]) -> str | None:
    """The hex sha-256 of ``Repr-Digest: sha-256=:<base64>:`` (RFC 9530), or None."""
    for value in values:
        for item in value.split(","):
            name, _, rest = item.strip().partition("=")
            if name.strip().lower() != "sha-256" or not rest.startswith(":"):
                continue
            try:
                raw = base64.b64decode(rest.strip().strip(":"), validate=True)
            except (binascii.Error, ValueError):
                continue
            if len(raw) == 32:
                return raw.hex()
    return None


@dataclass
class _Verdict:
    status: str
    denial: Denial | None = None
    evidence: str | None = None  # for ``changed``
    http_status: int | None = None


class _Recheck:
    """One recheck: one event loop, one client, bounded caches shared by every shard."""

    def __init__(self, source: OutputDir, dest: OutputDir, config: FetchConfig, headers: bool,
                 view: ProgressView | None) -> None:
        self.source = source
        self.dest = dest
        self.config = config
        self.headers = headers
        self.view = view
        self.lists_missing: tuple[str, ...] = ()
        self.counts: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.by_status_reason: Counter[tuple[str, str]] = Counter()
        self.hops_recorded = True
        self.policy_cache = _CountingStore(BoundedCache(POLICY_CACHE_BYTES,
                                                        lambda p: p.approx_bytes))
        self.licence_cache: BoundedCache[str, Licence] = BoundedCache(
            LICENCE_CACHE_BYTES, lambda licence: licence.approx_bytes)

    async def run(self) -> RecheckReport:
        started = datetime.now(UTC)
        stamp = await _free_stamp(self.dest, started)
        t0 = time.monotonic()
        shards = sorted(self.source.completed_shards())
        progress = Progress(self._successes(shards), self.view)
        sink = _TableSink(self.dest, recheck_file(stamp))
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                async with make_client(self.config) as client:
                    for shard_id in shards:
                        await self._shard(shard_id, client, pool, sink, progress)
            sink.commit()
        except BaseException:
            sink.abort()
            raise
        finally:
            progress.close()
        order = list(_KINDS)
        requests = {_KINDS[k]: client.sent[k] for k in sorted(
            client.sent, key=lambda k: order.index(k) if k in order else len(order))
            if k in _KINDS}
        report = RecheckReport(
            redact_userinfo(self.dest.url), stamp, self._counts(), dict(sorted(
                self.reasons.items())), requests, self.policy_cache.loads,
            round(time.monotonic() - t0, 3), self.hops_recorded)
        summary = self._summary(report, started, len(shards))
        self.dest.write_json(summary_file(stamp), summary)
        return RecheckReport(**{**report.__dict__, "summary": summary})

    def _successes(self, shards: list[int]) -> int:
        return sum(int(self.source.read_json(stats_name(s)).get("successes", 0))
                   for s in shards)

    def _counts(self) -> dict[str, int]:
        return {status: self.counts.get(status, 0) for status in STATUSES}

    async def _shard(self, shard_id: int, client: HttpClient, pool: ThreadPoolExecutor,
                     sink: _TableSink, progress: Progress) -> None:
        ctx = _Shard(self.config, client, pool, self.source.storage_options,
                     policy_cache=self.policy_cache, licence_cache=self.licence_cache)
        for rows in self._success_batches(shard_id):
            verdicts = await self._decide_all(ctx, rows)
            table = self._table(shard_id, rows, verdicts)
            sink.write(table)
            progress.update(len(rows), sum(v.status == KEPT for v in verdicts))

    def _success_batches(self, shard_id: int) -> Iterator[list[dict[str, Any]]]:
        """The shard's ``success`` rows, :data:`BATCH_ROWS` at a time."""
        with self.source.fs.open(self.source.path(parquet_name(shard_id)), "rb") as f:
            pf = pq.ParquetFile(f)
            names = pf.schema_arrow.names
            self.hops_recorded = self.hops_recorded and "redirects" in names
            columns = [c for c in _COLUMNS if c in names]
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=columns):
                table = pa.Table.from_batches([batch])
                table = table.filter(pc.equal(table["status"], str(Status.SUCCESS)))
                if table.num_rows:
                    yield table.to_pylist()

    async def _decide_all(self, ctx: _Shard, rows: list[dict[str, Any]]) -> list[_Verdict]:
        """Every row's verdict, hosts taking turns (at most ``per_host`` requests each)."""
        per_host = self.config.per_host_concurrency if self.headers else self.config.concurrency
        scheduler: HostScheduler[int] = HostScheduler(ctx.client.slots, per_host)
        for index, row in enumerate(rows):
            scheduler.add(URL(row["url"]).host or "" if _parses(row["url"]) else "", index)
        verdicts: list[_Verdict | None] = [None] * len(rows)

        async def worker() -> None:
            while (item := await scheduler.next()) is not None:
                host, index = item
                try:
                    verdicts[index] = await self._decide(ctx, rows[index])
                finally:
                    scheduler.done(host)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self.config.concurrency, len(rows))):
                group.create_task(worker())
        return [v for v in verdicts if v is not None]

    async def _decide(self, ctx: _Shard, row: dict[str, Any]) -> _Verdict:
        try:
            return await self._decide_row(ctx, row)
        except Exception as exc:  # a response nothing foresaw: this sample's row only
            logger.error("unexpected error rechecking %r: %s: %s", row["url"],
                         type(exc).__name__, exc, exc_info=exc)
            return _Verdict(UNCHECKED, Denial(Reason.CONNECTION_ERROR,
                                              f"unexpected error: {type(exc).__name__}: {exc}"))

    async def _decide_row(self, ctx: _Shard, row: dict[str, Any]) -> _Verdict:
        permits = Permits()
        url = parse_http_url(row["url"])
        if isinstance(url, Denial):
            return _Verdict(UNCHECKED, url)
        denial = ctx.engine.check_url(str(url), permits)
        if denial is None and row.get("sha256"):
            denial = ctx.engine.check_digest(row["sha256"], permits)
        if denial is not None:
            return _verdict(denial)
        hops = [url]
        for text in row.get("redirects") or ():
            hop = parse_http_url(text)
            if isinstance(hop, URL):
                hops.append(hop)
        policy: OriginPolicy | None = None
        for hop in hops:
            policy, denial = await ctx.check_hop(hop, permits)
            # Crawl-delay only paces requests: without --headers none is made.
            if denial is not None and (self.headers
                                       or denial.reason is not Reason.CRAWL_DELAY_TOO_LONG):
                return _verdict(denial)
        if self.headers:
            return await self._ask_headers(ctx, url, row, permits)
        denial = await ctx.judge_headers(policy, hops[-1],
                                         CIMultiDictProxy(CIMultiDict[str]()), permits)
        return _verdict(denial) if denial is not None else _Verdict(KEPT)

    async def _ask_headers(self, ctx: _Shard, url: URL, row: dict[str, Any],
                           permits: Permits) -> _Verdict:
        """One header-only request, through every hop, judged as a download judges it."""
        hop_policy: list[OriginPolicy] = []

        async def check_hop(hop: URL) -> Denial | None:
            policy, denial = await ctx.check_hop(hop, permits)
            hop_policy[:] = [policy]
            return denial

        async def check_headers(final: URL, headers: CIMultiDictProxy[str]) -> Denial | None:
            policy = hop_policy[0] if hop_policy else None
            return await ctx.judge_headers(policy, final, headers, permits)

        fetched = await ctx.client.fetch_headers(url, check_hop=check_hop,
                                                 check_headers=check_headers)
        if isinstance(fetched, Denial):
            return _verdict(fetched)
        changed = changed_evidence(fetched.headers, row.get("sha256"), row.get("body_size"))
        status = CHANGED if changed else KEPT
        return _Verdict(status, evidence=changed, http_status=fetched.http_status)

    def _table(self, shard_id: int, rows: list[dict[str, Any]],
               verdicts: list[_Verdict]) -> pa.Table:
        out = []
        for row, verdict in zip(rows, verdicts, strict=True):
            denial = verdict.denial
            reason = None if denial is None else str(denial.reason)
            self.counts[verdict.status] += 1
            if reason is not None:
                self.reasons[reason] += 1
                self.by_status_reason[(verdict.status, reason)] += 1
            evidence = verdict.evidence if denial is None else denial.evidence
            out.append({
                "shard": shard_id, "key": row["key"], "url": row["url"],
                "sha256": row.get("sha256"), "previous_status": row["status"],
                "status": verdict.status, "reason": reason,
                "evidence": None if evidence is None else redact_userinfo(evidence),
                "http_status": verdict.http_status or (denial.http_status if denial else None),
                "decided_at": datetime.now(UTC),
                **evidence_columns(denial.proof if denial else None)})
        return pa.Table.from_pylist(out, schema=RECHECK_SCHEMA)

    def _summary(self, report: RecheckReport, started: datetime, shards: int) -> dict[str, Any]:
        unreachable = self.reasons.get("robots_unreachable", 0)
        by_status: dict[str, dict[str, int]] = {}
        for (status, reason), n in sorted(self.by_status_reason.items()):
            by_status.setdefault(status, {})[reason] = n
        return {
            "stamp": report.stamp,
            "run": redact_userinfo(self.source.url),
            "recheck_file": recheck_file(report.stamp),
            "started_at": started.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "duration": report.duration,
            "consent_profile": self.config.consent,
            "user_agent": self.config.user_agent,
            "user_agent_token": self.config.user_agent_token,
            "ignored_checks": list(self.config.ignore),
            "opt_out_lists": [redact_userinfo(p) for p in self.config.opt_out_lists],
            "opt_out_lists_missing": list(self.lists_missing),
            "headers": self.headers,
            "hops_rechecked": report.hops_rechecked,
            "hops_note": None if report.hops_rechecked else
            "some shards were written before the audit recorded redirects: their samples "
            "were rechecked against their URL's own origin only",
            "shards": shards,
            "samples": report.total,
            "counts": report.counts,
            "reasons": by_status,
            "origin_loads": report.origin_loads,
            "requests": report.requests,
            "robots_unreachable_note": None if not unreachable else
            f"{unreachable} sample(s) are withdrawn because robots.txt could not be fetched "
            "now (5xx, 429, timeout): a download would refuse them (RFC 9309), but the site "
            "may only be down for a while; recheck again before applying",
        }


def _parses(text: object) -> bool:
    return isinstance(parse_http_url(text), URL)


def _verdict(denial: Denial) -> _Verdict:
    """A denial met now: disallowed withdraws; a failure to ask keeps the sample."""
    status = WITHDRAWN if denial.status is Status.DISALLOWED else UNCHECKED
    return _Verdict(status, denial, http_status=denial.http_status)


async def _free_stamp(dest: OutputDir, started: datetime) -> str:
    """The recheck's stamp: its start second, or the next free one (two in one second)."""
    stamp = recheck_stamp(started)
    for _ in range(3):
        if not dest.exists(recheck_folder(stamp)):
            return stamp
        await asyncio.sleep(1.0)
        stamp = recheck_stamp(datetime.now(UTC))
    raise OutputError(f"{dest.url}: {recheck_folder(stamp)} exists already")


class _CountingStore:
    """A policy store that counts the origin loads it is given (each one fetched anew)."""

    def __init__(self, cache: BoundedCache[str, OriginPolicy]) -> None:
        self._cache = cache
        self.loads = 0

    def get(self, origin: str, /) -> OriginPolicy | None:
        return self._cache.get(origin)

    def __setitem__(self, origin: str, policy: OriginPolicy, /) -> None:
        self.loads += 1
        self._cache[origin] = policy


class _TableSink:
    """The recheck table, written batch by batch and made visible whole.

    Locally it streams to ``<name>.tmp`` and is renamed; on an object store it
    is spooled to a local temporary file and uploaded under its name at the end.
    """

    def __init__(self, out: OutputDir, name: str) -> None:
        self.out = out
        self.name = name
        out.fs.makedirs(out.path(name.rsplit("/", 1)[0]), exist_ok=True)
        self._file: IO[bytes] = out.fs.open(out.path(temporary(name)), "wb") if out.local \
            else tempfile.TemporaryFile(prefix="consentfetch-recheck-", suffix=".parquet")
        self._writer = pq.ParquetWriter(self._file, RECHECK_SCHEMA)

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def commit(self) -> None:
        self._writer.close()
        if self.out.local:
            self._file.close()
            self.out.commit(self.name)
        else:
            self.out.upload(self.name, self._file)
            self._file.close()

    def abort(self) -> None:
        try:
            self._writer.close()
            self._file.close()
        finally:
            tmp = self.out.path(temporary(self.name))
            if self.out.local and self.out.fs.exists(tmp):
                self.out.fs.rm(tmp)
