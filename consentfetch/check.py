"""``check_url`` / ``consentfetch check``: would this URL be downloaded, and why?

A live check without building a dataset. It fetches the origin's consent
files and the image's response headers. The body is read only when the
headers allow it, because body metadata (IPTC, C2PA) is a signal too; it is
never resized or written. Every URL goes through the very code a download
uses (:class:`consentfetch.pipeline._Shard`), so there is no second
implementation of any rule.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Unpack

from yarl import URL

from .config import FetchConfig, FetchOptions, resolve_config
from .consent.origins import origin_of
from .pipeline import Observation, _Shard, make_client
from .reader import InputRow
from .safetext import redact_userinfo


@dataclass
class CheckResult:
    """The decision on one URL, with everything that led to it."""

    url: str
    decision: str  # "allowed" (would be downloaded), or the status: disallowed, failed_to_download
    reason: str | None
    evidence: str | None
    http_status: int | None
    hops: list[str] = field(default_factory=list)  # every URL requested, redirects included
    headers: dict[str, list[str]] = field(default_factory=dict)  # consent-bearing headers
    origin_files: list[dict[str, Any]] = field(default_factory=list)  # robots.txt, ai.txt, ...

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _check_all(urls: list[str], config: FetchConfig) -> list[CheckResult]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        async with make_client(config) as client:
            shard = _Shard(config, client, pool)

            async def one(url: str) -> CheckResult:
                seen = Observation()
                result = await shard.process(InputRow(url, None, {}), seen=seen,
                                             decide_only=True)
                decision = "allowed" if result.reason is None else str(result.status)
                origins = {origin_of(URL(hop)) for hop in seen.hops}
                files = [{k: v for k, v in f.to_row().items() if k != "body"}
                         for (origin, _), f in shard.policies.used.items() if origin in origins]
                files += [{k: v for k, v in f.to_row().items() if k != "body"}
                          for f in shard.licences.used.values()]
                # The credentials of a URL are used for its request, never shown.
                evidence = None if result.evidence is None else redact_userinfo(result.evidence)
                return CheckResult(redact_userinfo(url), decision, result.reason, evidence,
                                   result.http_status, [redact_userinfo(h) for h in seen.hops],
                                   seen.headers, files)

            return list(await asyncio.gather(*(one(u) for u in urls)))


def check_urls(urls: list[str], config: FetchConfig | None = None,
               **options: Unpack[FetchOptions]) -> list[CheckResult]:
    """Live consent decisions for ``urls`` with the download's options (``consent=``...).

    Options default as for a download, except ``retries``: 0 (a check asks
    once). A ``config`` may be given instead of options and is used as it is,
    its ``retries`` included; a config *and* options is a ``ConfigError``.
    """
    config = resolve_config(config, options, defaults={"retries": 0})
    return asyncio.run(_check_all(list(urls), config))


def check_url(url: str, config: FetchConfig | None = None,
              **options: Unpack[FetchOptions]) -> CheckResult:
    """Would ``url`` be downloaded under these options (or ``config``), and why? (a live
    check; see :func:`check_urls`)"""
    return check_urls([url], config, **options)[0]
