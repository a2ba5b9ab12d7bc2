"""HTTP for consentfetch: one aiohttp session, redirects hop by hop, deadlines, caps.

:class:`HttpClient` does two kinds of request:

* :meth:`HttpClient.fetch_small` — an origin file (robots.txt, later ai.txt and
  tdmrep.json): up to 5 redirects, a byte cap, the status and body returned.
* :meth:`HttpClient.fetch_image` — an image URL. Redirects are followed one
  hop at a time so that every hop can be consent-checked (``check_hop``) and
  address-checked (the guarded resolver); the final response's headers are
  judged (``check_headers``) before a byte of the body is read; the body is
  read under a byte cap. Transient failures are retried with backoff.

Every aiohttp / OS exception is translated to a reason code in exactly one
place, :func:`denial_from_exception`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDictProxy
from tenacity import (AsyncRetrying, retry_if_result, stop_after_attempt, wait_exponential,
                      wait_random)
from yarl import URL

from ..consent.decision import Denial, Reason
from .guard import BlockedAddressError, check_host, resolver_for
from .politeness import HostSlots

logger = logging.getLogger(__name__)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ORIGIN_FILE_MAX_REDIRECTS = 5  # RFC 9309 §2.3.1.2: follow at least five
_CHUNK = 64 * 1024

HopCheck = Callable[[URL], Awaitable[Denial | None]]
HeaderCheck = Callable[[URL, "CIMultiDictProxy[str]"], Denial | None]


@dataclass(frozen=True, slots=True)
class Fetched:
    """A response body we are allowed to keep."""

    url: URL  # after redirects
    http_status: int
    headers: CIMultiDictProxy[str]
    body: bytes


@dataclass(frozen=True, slots=True)
class SmallFetch:
    """The outcome of fetching an origin file: a status and body, or an error."""

    url: URL
    http_status: int | None
    body: bytes = b""
    error: Denial | None = None
    truncated: bool = False


def parse_http_url(raw: object) -> URL | Denial:
    """A URL we can request (http or https with a host), or an ``invalid_url`` denial."""
    if not isinstance(raw, str) or not raw.strip():
        return Denial(Reason.INVALID_URL, "empty URL")
    text = raw.strip()
    try:
        url = URL(text)
    except (ValueError, TypeError) as exc:
        return Denial(Reason.INVALID_URL, f"unparseable URL: {exc}")
    if url.scheme not in ("http", "https"):
        scheme = url.scheme or "(none)"
        return Denial(Reason.INVALID_URL, f"unsupported scheme {scheme}: only http and https")
    if not url.host:
        return Denial(Reason.INVALID_URL, "URL has no host")
    try:
        url.port  # raises on a non-numeric or out-of-range port
    except ValueError as exc:
        return Denial(Reason.INVALID_URL, f"bad port: {exc}")
    return url


def denial_from_exception(exc: BaseException) -> Denial:
    """Translate an exception raised while requesting a URL into a reason code."""
    text = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        if isinstance(exc.os_error, BlockedAddressError):
            return Denial(Reason.BLOCKED_ADDRESS, str(exc.os_error))
        return Denial(Reason.DNS_ERROR, text)
    if isinstance(exc, BlockedAddressError):
        return Denial(Reason.BLOCKED_ADDRESS, str(exc))
    if isinstance(exc, (aiohttp.ClientSSLError, ssl.SSLError)):
        return Denial(Reason.TLS_ERROR, text)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):  # ServerTimeoutError too
        return Denial(Reason.TIMEOUT, text or "timed out")
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        return Denial(Reason.INVALID_URL, text)
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        # Resets, refused connections, short bodies (ClientPayloadError),
        # malformed responses and oversized headers.
        return Denial(Reason.CONNECTION_ERROR, text)
    raise exc  # a bug, not a network fault: let it surface


def is_transient(outcome: object) -> bool:
    """Whether a failed attempt is worth repeating: timeouts, resets, 429 and 5xx."""
    if not isinstance(outcome, Denial):
        return False
    if outcome.reason in (Reason.TIMEOUT, Reason.CONNECTION_ERROR):
        return True
    return outcome.reason is Reason.HTTP_ERROR and (
        outcome.http_status == 429 or (outcome.http_status or 0) >= 500)


def _http_error(response: aiohttp.ClientResponse) -> Denial:
    return Denial(Reason.HTTP_ERROR, f"HTTP {response.status} {response.reason or ''}".strip(),
                  response.status)


class HttpClient:
    """One aiohttp session with our limits; use as an async context manager."""

    def __init__(self, *, user_agent: str, timeout: float, max_bytes: int,
                 max_redirects: int, retries: int, concurrency: int, per_host_concurrency: int,
                 allow_private_networks: bool, retry_backoff: float = 1.0) -> None:
        self.user_agent = user_agent
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.allow_private_networks = allow_private_networks
        self.slots = HostSlots(per_host_concurrency)
        self._concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpClient:
        connector = aiohttp.TCPConnector(
            limit=self._concurrency * 2, ttl_dns_cache=300,
            resolver=resolver_for(self.allow_private_networks))
        self._session = aiohttp.ClientSession(
            connector=connector, headers={"User-Agent": self.user_agent},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout),
            max_line_size=16 * 1024, max_field_size=16 * 1024)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("HttpClient used outside 'async with'")
        return self._session

    def _guard(self, url: URL) -> Denial | None:
        if self.allow_private_networks:
            return None
        evidence = check_host(url.host or "")
        return Denial(Reason.BLOCKED_ADDRESS, evidence) if evidence else None

    # -- origin files ------------------------------------------------------------
    async def fetch_small(self, url: URL, *, max_bytes: int) -> SmallFetch:
        """GET a small file, following up to 5 redirects; never raises for network faults."""
        current = url
        try:
            async with asyncio.timeout(self.timeout):
                for _ in range(ORIGIN_FILE_MAX_REDIRECTS + 1):
                    denial = self._guard(current)
                    if denial:
                        return SmallFetch(url, None, error=denial)
                    async with self.session.get(current, allow_redirects=False) as response:
                        location = response.headers.get("Location")
                        if response.status in REDIRECT_STATUSES and location:
                            current = current.join(URL(location))
                            continue
                        body = await response.content.read(max_bytes + 1)
                        return SmallFetch(url, response.status, body[:max_bytes],
                                          truncated=len(body) > max_bytes)
                return SmallFetch(url, None, error=Denial(
                    Reason.TOO_MANY_REDIRECTS,
                    f"more than {ORIGIN_FILE_MAX_REDIRECTS} redirects from {url}"))
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            return SmallFetch(url, None, error=denial_from_exception(exc))

    # -- images --------------------------------------------------------------------
    async def fetch_image(self, url: URL, *, check_hop: HopCheck, check_headers: HeaderCheck,
                          host_delay: Callable[[URL], float]) -> Fetched | Denial:
        """Fetch an image with retries on transient failures; never raises for network faults."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries + 1),
            # retry_backoff, doubling, capped at 30 s, plus up to one backoff of jitter
            wait=wait_exponential(multiplier=self.retry_backoff, max=30)
            + wait_random(0, self.retry_backoff),
            retry=retry_if_result(is_transient),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        outcome: Fetched | Denial | None = await retrying(
            self._attempt, url, check_hop, check_headers, host_delay)
        assert isinstance(outcome, (Fetched, Denial))
        return outcome

    async def _attempt(self, url: URL, check_hop: HopCheck, check_headers: HeaderCheck,
                       host_delay: Callable[[URL], float]) -> Fetched | Denial:
        current = url
        for _ in range(self.max_redirects + 1):
            denial = self._guard(current) or await check_hop(current)
            if denial:
                return denial
            async with self.slots.slot(current.host or "", host_delay(current)):
                outcome = await self._one_hop(current, check_headers)
            if not isinstance(outcome, URL):
                return outcome
            current = outcome
        return Denial(Reason.TOO_MANY_REDIRECTS,
                      f"more than {self.max_redirects} redirects starting at {url}")

    async def _one_hop(self, url: URL, check_headers: HeaderCheck) -> Fetched | Denial | URL:
        """One request under the deadline: the next hop's URL, a body, or a denial."""
        try:
            async with asyncio.timeout(self.timeout):
                async with self.session.get(url, allow_redirects=False) as response:
                    location = response.headers.get("Location")
                    if response.status in REDIRECT_STATUSES and location:
                        nxt = parse_http_url(str(url.join(URL(location))))
                        return nxt
                    if not 200 <= response.status < 300:
                        return _http_error(response)
                    denial = check_headers(url, response.headers)
                    if denial:
                        response.close()  # drop the connection: no body byte is read
                        return Denial(denial.reason, denial.evidence, response.status)
                    return await self._read_body(url, response)
        except TimeoutError:
            return Denial(Reason.TIMEOUT, f"no complete response within {self.timeout:g} s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return denial_from_exception(exc)

    async def _read_body(self, url: URL, response: aiohttp.ClientResponse) -> Fetched | Denial:
        declared = response.content_length
        if declared is not None and declared > self.max_bytes:
            response.close()
            return Denial(Reason.TOO_LARGE, f"Content-Length {declared} exceeds --max-bytes "
                          f"{self.max_bytes}", response.status)
        body = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK):
            body += chunk
            if len(body) > self.max_bytes:
                response.close()
                return Denial(Reason.TOO_LARGE, f"body exceeds --max-bytes {self.max_bytes}",
                              response.status)
        return Fetched(url, response.status, response.headers, bytes(body))
