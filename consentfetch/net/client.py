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
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from multidict import CIMultiDictProxy
from tenacity import AsyncRetrying, retry_if_result, stop_after_attempt, wait_none
from yarl import URL

from ..consent.decision import Denial, Reason, Retry, retry_when
from .guard import BlockedAddressError, check_host, resolver_for
from .politeness import HostSlots
from .pool import BoundedIdleConnector, ensure_open_files

logger = logging.getLogger(__name__)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
BACKOFF_STATUSES = frozenset({429, 503})  # the statuses whose Retry-After we honour
ORIGIN_FILE_MAX_REDIRECTS = 5  # RFC 9309 §2.3.1.2: follow at least five
# Idle keep-alive connections are closed after this, and at most IDLE_PER_REQUEST ×
# --concurrency of them are kept at once (see net/pool.py: aiohttp bounds only the
# connections in use, and over a long tail of hosts idle ones piled up into thousands).
KEEPALIVE_SECONDS = 2.0
IDLE_PER_REQUEST = 2
LATE_TIMEOUT_SHARE = 0.25  # of --timeout, for attempts at a host whose last request timed out
_CHUNK = 64 * 1024
_FILE_PATHS = ("/robots.txt", "/ai.txt", "/.well-known/tdmrep.json")  # counted apart

MAX_HEADER_LINE = 16 * 1024  # bytes in one response header line
MAX_HEADERS = 128  # response header lines
# Outcomes that count against a host's health (backoff, circuit breaker).
HOST_FAILURES = frozenset({Reason.TIMEOUT, Reason.CONNECTION_ERROR, Reason.DNS_ERROR,
                           Reason.TLS_ERROR, Reason.HTTP_ERROR})

HopCheck = Callable[[URL], Awaitable[Denial | None]]
# Statuses a server answers HEAD with when it does not serve HEAD: ask with GET instead.
HEAD_REFUSED = frozenset({405, 501})
# Awaited once the headers are in, before a byte of the body is read (it may fetch
# what the headers name, such as an RSL licence, while this hop's host slot is held).
HeaderCheck = Callable[[URL, "CIMultiDictProxy[str]"], Awaitable[Denial | None]]
# One request of a redirect chain, given (url, header check, budget left, the
# attempt's deadline): the next hop's URL, the response, or a denial.
_OneHop = Callable[[URL, "HeaderCheck", float, float], Awaitable["Fetched | Denial | URL"]]


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
    reached: bool = True  # False: no connection to the host was ever established


def parse_http_url(raw: object) -> URL | Denial:
    """A URL we can request (http or https with a host), or an ``invalid_url`` denial.

    Everything a request would later trip over is found here: text that is
    not valid Unicode (lone surrogates, which yarl would silently drop from a
    path), an IPv6 literal left open, a port out of range, a host that is not
    valid IDNA (``xn--``) or has an empty or over-long label (RFC 1035: 63).
    """
    if not isinstance(raw, str) or not raw.strip():
        return Denial(Reason.INVALID_URL, "empty URL")
    text = raw.strip()
    if not _is_unicode(text):
        return Denial(Reason.INVALID_URL, _not_unicode(text))
    try:
        url = URL(text)
        scheme, host, ascii_host = url.scheme, url.host, url.raw_host
        _ = url.port  # raises on a non-numeric or out-of-range port
    except (ValueError, TypeError) as exc:  # UnicodeError (IDNA) is a ValueError
        return Denial(Reason.INVALID_URL, f"unparseable URL: {exc}")
    if scheme not in ("http", "https"):
        return Denial(Reason.INVALID_URL,
                      f"unsupported scheme {scheme or '(none)'}: only http and https")
    if not host or not ascii_host:
        return Denial(Reason.INVALID_URL, "URL has no host")
    problem = _host_name_problem(ascii_host)
    if problem:
        return Denial(Reason.INVALID_URL, problem)
    return url


def parse_location(base: URL, location: str) -> URL | Denial:
    """The URL a redirect's ``Location`` points to, or an ``invalid_url`` denial."""
    try:
        target: URL | Denial = parse_http_url(str(base.join(URL(location))))
    except (ValueError, TypeError) as exc:
        target = Denial(Reason.INVALID_URL, str(exc))
    if isinstance(target, Denial):
        return Denial(Reason.INVALID_URL,
                      f"redirect from {base} to unusable Location {location!r}: "
                      f"{target.evidence}")
    return target


def _not_unicode(text: str) -> str:
    """Evidence for a URL that is not valid Unicode: its bytes, where the input's were
    not UTF-8 (read with ``surrogateescape``), else the lone surrogate it holds."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return "URL holds text that is not valid Unicode (a lone surrogate)"
    return f"URL is not valid UTF-8: {raw!r}"


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _host_name_problem(ascii_host: str) -> str | None:
    """Why an (IDNA-encoded) host name cannot be resolved, or None (IP literals pass)."""
    if ascii_host.startswith("[") or ascii_host.replace(".", "").isdigit() \
            or ":" in ascii_host:
        return None
    name = ascii_host.removesuffix(".")
    if len(name) > 253:
        return f"host name longer than 253 characters ({len(name)})"
    for label in name.split("."):
        if not 1 <= len(label) <= 63:
            return f"host name label of {len(label)} characters (1 to 63 allowed)"
    return None


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
    """Whether a failed attempt is worth repeating now: timeouts, resets, 429 and 5xx
    (:data:`~consentfetch.consent.decision.TRANSIENT`)."""
    return isinstance(outcome, Denial) and \
        Retry.IN_RUN in retry_when(outcome.reason, outcome.http_status)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value: delay-seconds or an HTTP-date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # RFC 9110: 1*DIGIT, ASCII only
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


async def _judge(url: URL, response: aiohttp.ClientResponse,
                 check_headers: HeaderCheck) -> URL | Denial | None:
    """What a response's status and headers decide: the next hop's URL, an HTTP error,
    or the headers' denial (its connection dropped: no body byte is read); None when
    the body may be read."""
    location = response.headers.get("Location")
    if response.status in REDIRECT_STATUSES and location:
        return parse_location(url, location)
    if not 200 <= response.status < 300:
        return _http_error(response)
    denial = await check_headers(url, response.headers)
    if denial:
        response.close()
        return denial.with_http_status(response.status)
    return None


def _http_error(response: aiohttp.ClientResponse) -> Denial:
    text = f"HTTP {response.status} {response.reason or ''}".strip()
    retry_after = None
    if response.status in BACKOFF_STATUSES:
        raw = response.headers.get("Retry-After")
        retry_after = parse_retry_after(raw)
        if raw:
            text += f" (Retry-After: {raw})"
    return Denial(Reason.HTTP_ERROR, text, response.status, retry_after)


def _requested(times: int) -> str:
    return "requested once" if times == 1 else f"requested {times} times"


@dataclass(slots=True)
class _Tries:
    """One row's requests over its attempts, so its evidence can say how many were made."""

    requests: int = 0  # attempts that sent a request
    last: Denial | None = None  # the failure of the last of them

    def failed(self, outcome: Denial) -> Denial:
        self.last = outcome
        return outcome

    def told(self, outcome: Fetched | Denial) -> Fetched | Denial:
        """The row's outcome; a failure after more than one request says how many."""
        if outcome is not self.last or self.requests < 2:
            return outcome
        assert isinstance(outcome, Denial)
        return Denial(outcome.reason, f"{_requested(self.requests)}; last: {outcome.evidence}",
                      outcome.http_status, outcome.retry_after)


async def read_capped(content: aiohttp.StreamReader, limit: int) -> tuple[bytes, bool]:
    """The body up to ``limit`` bytes, read to its end however it arrives; and whether it
    was longer. (One ``read(n)`` returns only what is buffered at that moment.)"""
    body = bytearray()
    while len(body) <= limit:
        chunk = await content.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body[:limit]), len(body) > limit


class HttpClient:
    """One aiohttp session with our limits; use as an async context manager.

    ``slots`` holds the per-host politeness state; the shard's scheduler
    shares it, so the hosts a client backs off are the hosts it skips.
    """

    def __init__(self, *, user_agent: str, timeout: float, max_bytes: int,
                 max_redirects: int, retries: int, concurrency: int, slots: HostSlots,
                 allow_private_networks: bool, allowed_networks: tuple[str, ...] = (),
                 max_retry_after: float = 60.0, resolver: str = "threaded",
                 ca_file: str | None = None) -> None:
        self.user_agent = user_agent
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.retries = retries
        self.max_retry_after = max_retry_after
        self.allow_private_networks = allow_private_networks
        self.allowed_networks = allowed_networks
        self.slots = slots
        self._resolver = resolver
        self._ca_file = ca_file
        self._concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None
        #: requests sent by :meth:`fetch_small` (by the path first asked for, "/robots.txt";
        #: "file" for any other, such as a licence) and by :meth:`fetch_headers`
        #: ("HEAD", "GET"); image requests are not counted
        self.sent: Counter[str] = Counter()

    async def __aenter__(self) -> HttpClient:
        # in use (limit) and idle (max_idle)
        ensure_open_files(self._concurrency * (2 + IDLE_PER_REQUEST))
        connector = BoundedIdleConnector(
            max_idle=self._concurrency * IDLE_PER_REQUEST, keepalive_timeout=KEEPALIVE_SECONDS,
            limit=self._concurrency * 2, ttl_dns_cache=300, ssl=self._tls_context(),
            resolver=resolver_for(self.allow_private_networks, self.allowed_networks,
                                  self._resolver))
        self._session = aiohttp.ClientSession(
            connector=connector, headers={"User-Agent": self.user_agent},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout),
            max_line_size=MAX_HEADER_LINE, max_field_size=MAX_HEADER_LINE,
            max_headers=MAX_HEADERS)
        return self

    def _tls_context(self) -> ssl.SSLContext | bool:
        """Certificates are always verified; ``ca_file`` adds authorities to the system's."""
        if self._ca_file is None:
            return True
        context = ssl.create_default_context()
        context.load_verify_locations(cafile=self._ca_file)
        return context

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("HttpClient used outside 'async with'")
        return self._session

    def guard(self, url: URL) -> Denial | None:
        """The denial of a URL whose host is a refused address (a literal one), else None."""
        if self.allow_private_networks:
            return None
        evidence = check_host(url.host or "", self.allowed_networks)
        return Denial(Reason.BLOCKED_ADDRESS, evidence) if evidence else None

    def is_transient(self, outcome: object) -> bool:
        """Worth another attempt: timeouts, resets, 429 and 5xx (unless Retry-After is too long)."""
        if not is_transient(outcome):
            return False
        assert isinstance(outcome, Denial)
        return outcome.retry_after is None or outcome.retry_after <= self.max_retry_after

    def _report(self, url: URL, outcome: Fetched | Denial | URL,
                started: float | None = None) -> None:
        """Tell the host's politeness state how an attempt (started at ``started`` on
        the slots' clock) went."""
        host = url.host or ""
        if isinstance(outcome, Denial) and outcome.reason in HOST_FAILURES \
                and (outcome.reason is not Reason.HTTP_ERROR or is_transient(outcome)):
            if outcome.retry_after is not None and outcome.retry_after > self.max_retry_after:
                # The host asks us not to come back within the wait we make: we do not.
                self.slots.give_up(host, f"{host} asked for Retry-After: "
                                   f"{outcome.retry_after:g} s, longer than --max-retry-after "
                                   f"{self.max_retry_after:g} s; given up for this run")
            self.slots.report(host, ok=False, outcome=outcome, evidence=outcome.evidence,
                              retry_after=min(outcome.retry_after, self.max_retry_after)
                              if outcome.retry_after is not None else None, started=started)
        elif not isinstance(outcome, Denial):  # a body or a redirect: the host works
            self.slots.report(host, ok=True)
        # Any other answer (a 404, a refusal by header) says nothing of the host's health:
        # a host whose images time out between quick 404s must still be given up.

    def given_up(self, url: URL) -> Denial | None:
        """The denial for a URL whose host the circuit breaker gave up, else None."""
        why = self.slots.given_up(url.host or "")
        if why is None:
            return None
        last = self.slots.last_failure(url.host or "")
        reason = last.reason if isinstance(last, Denial) else Reason.CONNECTION_ERROR
        return Denial(reason, f"not requested: {why}")

    # -- origin files ------------------------------------------------------------
    async def fetch_small(self, url: URL, *, max_bytes: int) -> SmallFetch:
        """GET a small file whole, following up to 5 redirects; never raises for network faults.

        The body is read until its end or ``max_bytes``, however it arrives
        (many small chunks, slowly), within one ``--timeout``. A failure after
        the headers keeps the response's status, so the caller can tell "no
        file" from "a file we could not read whole".
        """
        current = url
        status: int | None = None
        try:
            async with asyncio.timeout(self.timeout):
                for _ in range(ORIGIN_FILE_MAX_REDIRECTS + 1):
                    denial = self.guard(current)
                    if denial:
                        return SmallFetch(url, None, error=denial, reached=False)
                    self.sent[url.path if url.path in _FILE_PATHS else "file"] += 1
                    async with self.session.get(current, allow_redirects=False) as response:
                        status = response.status
                        location = response.headers.get("Location")
                        if response.status in REDIRECT_STATUSES and location:
                            target = parse_location(current, location)
                            if isinstance(target, Denial):  # cannot be followed: a failed fetch
                                return SmallFetch(url, None, error=target)
                            current = target
                            continue
                        body, truncated = await read_capped(response.content, max_bytes)
                        return SmallFetch(url, response.status, body, truncated=truncated)
                return SmallFetch(url, None, error=Denial(
                    Reason.TOO_MANY_REDIRECTS,
                    f"more than {ORIGIN_FILE_MAX_REDIRECTS} redirects from {url}"))
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            # A connector error (DNS, blocked address, refused, TLS handshake) means
            # no HTTP exchange with the host ever happened.
            return SmallFetch(url, status, error=denial_from_exception(exc),
                              reached=not isinstance(exc, aiohttp.ClientConnectorError))

    # -- images --------------------------------------------------------------------
    async def fetch_image(self, url: URL, *, check_hop: HopCheck,
                          check_headers: HeaderCheck) -> Fetched | Denial:
        """Fetch an image, retrying transient failures; never raises for network faults.

        The wait between attempts is the host's backoff (see
        :mod:`~consentfetch.net.politeness`), enforced by its slot. The first
        attempt runs directly; tenacity steps in only for the retries, since
        nearly every URL needs just one attempt. A failure after more than
        one request says how many were made (:class:`_Tries`).
        """
        return await self._with_retries(url, check_hop, check_headers, self._one_hop)

    async def fetch_headers(self, url: URL, *, check_hop: HopCheck,
                            check_headers: HeaderCheck) -> Fetched | Denial:
        """Like :meth:`fetch_image`, but never reads a byte of the body.

        Each hop is asked with HEAD; a server that answers HEAD with 405 or 501
        is asked with GET, and that connection is closed as soon as the headers
        are in. The :class:`Fetched` returned holds the final response's status
        and headers and an empty body. Same hops, checks, slots and retries as
        an image request: ``consentfetch recheck --headers``.
        """
        return await self._with_retries(url, check_hop, check_headers, self._headers_hop)

    async def _with_retries(self, url: URL, check_hop: HopCheck, check_headers: HeaderCheck,
                            one_hop: _OneHop) -> Fetched | Denial:
        tries = _Tries()
        outcome = await self._attempt(url, check_hop, check_headers, tries, one_hop=one_hop)
        if self.retries == 0 or not self.is_transient(outcome):
            return tries.told(outcome)

        async def again() -> Fetched | Denial:
            nonlocal outcome
            outcome = await self._attempt(url, check_hop, check_headers, tries,
                                          one_hop=one_hop)
            return outcome

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries), wait=wait_none(),
            # Only a request's own failure is retried: a row stopped because its host
            # was given up (told by _stopped) is not.
            retry=retry_if_result(lambda result: result is tries.last
                                  and self.is_transient(result)),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        retried: Fetched | Denial | None = await retrying(again)
        assert isinstance(retried, (Fetched, Denial))
        return tries.told(retried)

    def _stopped(self, url: URL, tries: _Tries) -> Denial | None:
        """The denial for a URL whose host was given up, true to what was requested.

        Before any request for the row: "not requested". After some: how many,
        why no more were made, and the row's own last answer.
        """
        denial = self.given_up(url)
        if denial is None or not tries.requests:
            return denial
        why = self.slots.given_up(url.host or "")
        text = f"{_requested(tries.requests)}; gave up: {why}"
        last = tries.last
        if last is None:  # the row's last request was a redirect to this host
            return Denial(denial.reason, text)
        return Denial(last.reason, f"{text}; last: {last.evidence}", last.http_status)

    async def _attempt(self, url: URL, check_hop: HopCheck, check_headers: HeaderCheck,
                       tries: _Tries, *, one_hop: _OneHop) -> Fetched | Denial:
        """One attempt: every hop of the redirect chain, within one ``--timeout``.

        The deadline budget covers the network time of all hops together
        (connect, headers, body); the politeness waits between hops do not
        count against it. ``tries`` records the row's requests so far.
        """
        loop = asyncio.get_running_loop()
        budget = deadline = self.timeout
        current = url
        for hop in range(self.max_redirects + 1):
            denial = self.guard(current) or self._stopped(current, tries) \
                or await check_hop(current)
            if denial:
                return denial
            async with self.slots.slot(current.host or ""):
                stopped = self._stopped(current, tries)  # given up while this waited
                if stopped:
                    return stopped
                if hop == 0:  # decided once the wait for the host is over
                    tries.requests += 1
                    budget = deadline = self.deadline(current)
                started, began = loop.time(), self.slots.now()
                outcome = await one_hop(current, check_headers, budget, deadline)
                budget -= loop.time() - started
            self._report(current, outcome, began)
            if isinstance(outcome, Denial):
                tries.failed(outcome)
            if not isinstance(outcome, URL):
                return outcome
            if budget <= 0:
                return tries.failed(Denial(
                    Reason.TIMEOUT, f"no complete response within {self._within(deadline)} "
                    f"(redirected to {outcome})"))
            current = outcome
        return Denial(Reason.TOO_MANY_REDIRECTS,
                      f"more than {self.max_redirects} redirects starting at {url}")

    def deadline(self, url: URL) -> float:
        """An attempt's deadline: ``--timeout``, or :data:`LATE_TIMEOUT_SHARE` of it while
        the host's failures in a row end with a timeout (a stalling or dripping host
        costs one full wait, not one per attempt, until it answers in time again)."""
        host = url.host or ""
        last = self.slots.last_failure(host)
        if self.slots.failures(host) and isinstance(last, Denial) \
                and last.reason is Reason.TIMEOUT:
            return self.timeout * LATE_TIMEOUT_SHARE
        return self.timeout

    def _within(self, deadline: float) -> str:
        if deadline >= self.timeout:
            return f"{self.timeout:g} s"
        return (f"{deadline:g} s (--timeout {self.timeout:g} s, cut as the host's last "
                f"request had timed out)")

    async def _one_hop(self, url: URL, check_headers: HeaderCheck,
                       budget: float, deadline: float) -> Fetched | Denial | URL:
        """One request within ``budget`` seconds (of the attempt's ``deadline``): the next
        hop's URL, a body, or a denial."""
        try:
            async with asyncio.timeout(budget):
                async with self.session.get(url, allow_redirects=False) as response:
                    judged = await _judge(url, response, check_headers)
                    if judged is not None:
                        return judged
                    return await self._read_body(url, response)
        except TimeoutError:
            return Denial(Reason.TIMEOUT, f"no complete response within {self._within(deadline)}")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return denial_from_exception(exc)

    async def _headers_hop(self, url: URL, check_headers: HeaderCheck,
                           budget: float, deadline: float) -> Fetched | Denial | URL:
        """One hop of :meth:`fetch_headers`: HEAD, or GET closed after the headers."""
        try:
            async with asyncio.timeout(budget):
                for method in ("HEAD", "GET"):
                    self.sent[method] += 1
                    async with self.session.request(method, url,
                                                    allow_redirects=False) as response:
                        if method == "HEAD" and response.status in HEAD_REFUSED:
                            continue
                        if method == "GET":
                            response.close()  # the headers are in: no body byte is read
                        judged = await _judge(url, response, check_headers)
                        if judged is not None:
                            return judged
                        return Fetched(url, response.status, response.headers, b"")
        except TimeoutError:
            return Denial(Reason.TIMEOUT, f"no response headers within {self._within(deadline)}")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return denial_from_exception(exc)
        raise AssertionError("unreachable: GET is never skipped")

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
