"""A small multi-origin web site on loopback, for the demo and the tests.

Each host address (127.0.0.2, 127.0.0.3, ...) is its own origin, all on one
port. Every origin serves what a test puts there with :meth:`LocalSite.put`
(robots.txt, ai.txt, images with chosen headers) plus a few endpoints steered
by query parameters, in the manner of Scrapy's mock server:

    /gen/<name>.jpg?w=320&h=240         a generated image (jpg, png or webp)
    /fault/status?code=503              that status, tiny body
    /fault/slow?delay=2                 headers after ``delay`` seconds
    /fault/drip?seconds=30              a body that trickles a byte a second
    /fault/short                        Content-Length larger than the body
    /fault/reset                        the connection is dropped
    /fault/redirect?n=3&to=/gen/a.jpg   a chain of n redirects, then ``to``
                                        (``delay=S`` waits S seconds before each)
    /fault/loop                         redirects to itself
    /fault/flaky?id=x&fail=2&code=503   ``code`` for the first ``fail`` requests of ``id``,
                                        then an image (``retry_after=S`` adds Retry-After)
    /fault/reset_body                   headers and half a body, then the connection drops
    /fault/burst?n=5&retry_after=1      429 for the first ``n`` requests to this host
                                        (any /fault/burst path), then an image

Every response a test put there (and every generated image) can be delivered
the way the web delivers it rather than in one polite write: give the site a
:class:`Delivery` (small pieces with pauses, chunked transfer encoding), and
``tls=True`` to serve HTTPS with a certificate from a throw-away test
certificate authority (``trustme``), whose PEM file is :attr:`LocalSite.ca_file`
(trust it explicitly: ``ca_file=site.ca_file``; verification stays on).

A :class:`RawResource` put at a path is answered with its exact bytes, written
to the socket as they are (status line, headers and body the test wrote, even
ones no HTTP library would produce: a Latin-1 reason phrase, bytes that are
not UTF-8 in a header), then the connection is closed.

Only loopback addresses are ever bound. The site runs in a background thread
with its own event loop so that synchronous code (the CLI demo, pytest tests,
subprocesses) can use it.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import ssl
import tempfile
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web
from multidict import CIMultiDict
from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)

DEFAULT_HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


@dataclass(frozen=True)
class Delivery:
    """How the site writes a body: in one write (the default) or as a real link does."""

    piece: int = 0  # bytes per write; 0: the whole body at once
    pause: float = 0.0  # seconds between two writes
    chunked: bool = False  # Transfer-Encoding: chunked, no Content-Length

    @property
    def polite(self) -> bool:
        return self.piece == 0 and not self.chunked


# One TCP initial window (10 segments of 1460 bytes) per 5 ms: a body arrives in
# many reads, as it does over any real link.
RUDE = Delivery(piece=14_600, pause=0.005, chunked=True)
DRIP = Delivery(piece=512, pause=0.001, chunked=False)


@dataclass(frozen=True)
class Resource:
    """What one path of one origin answers."""

    body: bytes = b""
    status: int = 200
    headers: Mapping[str, str] | Sequence[tuple[str, str]] = field(default_factory=dict)
    content_type: str | None = None
    cut: int | None = None  # drop the connection after this many body bytes
    delivery: Delivery | None = None  # None: the site's own
    head: bool = True  # False: HEAD is answered 405 Method Not Allowed, as some servers do


@dataclass(frozen=True)
class RawResource:
    """A verbatim HTTP response: ``data`` is written to the socket, then it is closed."""

    data: bytes


def make_image(width: int, height: int, fmt: str = "jpg", *, seed: int = 0,
               alpha: bool = False) -> bytes:
    """A deterministic picture (gradient and shapes) encoded as ``fmt``."""
    mode = "RGBA" if alpha else "RGB"
    im = Image.new(mode, (width, height), (seed * 37 % 256, 90, 160, 255))
    draw = ImageDraw.Draw(im)
    for i in range(6):
        x0 = (seed * 13 + i * 29) % max(1, width)
        y0 = (seed * 7 + i * 41) % max(1, height)
        colour = ((i * 53 + seed) % 256, (i * 97) % 256, (seed * 11) % 256,
                  128 if alpha else 255)
        draw.ellipse((x0, y0, x0 + width // 3, y0 + height // 3), fill=colour)
    out = io.BytesIO()
    pil_format = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}[fmt]
    im.save(out, pil_format, **({"quality": 90} if pil_format == "JPEG" else {}))
    return out.getvalue()


_CONTENT_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png",
                  "webp": "image/webp", "txt": "text/plain", "json": "application/json"}


class LocalSite:
    """Serve several loopback origins from one aiohttp application."""

    def __init__(self, hosts: Sequence[str] = DEFAULT_HOSTS, *,
                 delivery: Delivery = Delivery(), tls: bool = False) -> None:
        for host in hosts:
            if not host.startswith("127."):
                raise ValueError(f"LocalSite binds loopback addresses only, not {host}")
        self.hosts = tuple(hosts)
        self.port = 0
        self.delivery = delivery
        self.scheme = "https" if tls else "http"
        #: PEM file of the test certificate authority (HTTPS only), to trust explicitly.
        self.ca_file: str | None = None
        self._ssl = self._tls_context() if tls else None
        self._resources: dict[tuple[str, str], Resource | RawResource] = {}
        self.hits: Counter[tuple[str, str]] = Counter()  # (host, path) -> requests
        self.methods: Counter[tuple[str, str, str]] = Counter()  # (host, path, method)
        # (host, path) -> bodies written to their end, of the responses written in
        # pieces (a Delivery that is not polite): a client that closed the connection
        # after the headers is not counted
        self.bodies_sent: Counter[tuple[str, str]] = Counter()
        self.log: list[tuple[float, str, str]] = []  # (monotonic time, host, path_qs) in order
        self.counters: Counter[str] = Counter()  # state of the stateful faults
        self._inflight: Counter[str] = Counter()  # host -> requests being answered now
        #: host -> the most requests it was answering at once (until the handler returned)
        self.peak_inflight: Counter[str] = Counter()
        self.user_agents: set[str] = set()
        # Connections that carried a request: counted when first seen, held weakly (a
        # client's address and port can come back on loopback, an object id too).
        self._connections = weakref.WeakSet[object]()
        self._connection_count = 0
        # (host, path, Authorization header) of every request that sent one
        self.authorizations: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # -- content -------------------------------------------------------------
    def origin(self, host: str | int = 0) -> str:
        """``http://127.0.0.2:PORT`` for a host address or its index."""
        name = self.hosts[host] if isinstance(host, int) else host
        return f"{self.scheme}://{name}:{self.port}"

    def url(self, host: str | int, path: str) -> str:
        return self.origin(host) + path

    def put(self, host: str | int, path: str,
            resource: Resource | RawResource | bytes | str) -> str:
        """Serve ``resource`` at ``path`` of ``host``; returns the full URL."""
        name = self.hosts[host] if isinstance(host, int) else host
        if isinstance(resource, str):
            resource = Resource(resource.encode(), content_type="text/plain")
        elif isinstance(resource, bytes):
            resource = Resource(resource)
        with self._lock:
            self._resources[(name, path)] = resource
        return self.url(name, path)

    def hit_count(self, host: str | int, path: str) -> int:
        name = self.hosts[host] if isinstance(host, int) else host
        with self._lock:
            return self.hits[(name, path)]

    @property
    def connections_made(self) -> int:
        """Connections that carried at least one request."""
        with self._lock:
            return self._connection_count

    def open_connections(self) -> int:
        """Connections the server holds open now, idle keep-alive ones included."""
        if self._loop is None or self._runner is None or self._runner.server is None:
            return 0
        server = self._runner.server

        async def count() -> int:
            return len(server.connections)
        return asyncio.run_coroutine_threadsafe(count(), self._loop).result(5)

    # -- serving -------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        host = request.transport.get_extra_info("sockname")[0] if request.transport else ""
        path = request.path
        with self._lock:
            self.hits[(host, path)] += 1
            self.methods[(host, path, request.method)] += 1
            self.log.append((time.monotonic(), host, request.path_qs))
            self.user_agents.add(request.headers.get("User-Agent", ""))
            if request.transport is not None and request.transport not in self._connections:
                self._connections.add(request.transport)
                self._connection_count += 1
            if "Authorization" in request.headers:
                self.authorizations.append((host, path, request.headers["Authorization"]))
            resource = self._resources.get((host, path))
            self._inflight[host] += 1
            self.peak_inflight[host] = max(self.peak_inflight[host], self._inflight[host])
        try:
            return await self._answer(request, host, path, resource)
        finally:
            with self._lock:
                self._inflight[host] -= 1

    async def _answer(self, request: web.Request, host: str, path: str,
                      resource: Resource | RawResource | None) -> web.StreamResponse:
        if isinstance(resource, RawResource):
            return _raw(request, resource.data)
        if resource is not None:
            return await self._respond(request, resource, path)
        if path.startswith("/gen/"):
            return await self._generated(request)
        if path.startswith("/fault/"):
            return await self._stateful(request, host, path[len("/fault/"):]) \
                or await _fault(request, path[len("/fault/"):])
        return web.Response(status=404, text="not found")

    async def _stateful(self, request: web.Request, host: str,
                        kind: str) -> web.StreamResponse | None:
        """Faults whose answer depends on earlier requests (counted per id or host)."""
        q = request.query
        if kind == "flaky":
            name = f"flaky:{host}:{q.get('id', '')}"
            limit = int(q.get("fail", "1"))
        elif kind == "burst":
            name = f"burst:{host}"
            limit = int(q.get("n", "5"))
        else:
            return None
        with self._lock:
            self.counters[name] += 1
            failing = self.counters[name] <= limit
        if not failing:
            return web.Response(body=make_image(64, 48), content_type="image/jpeg")
        code = int(q.get("code", "429" if kind == "burst" else "503"))
        headers = {"Retry-After": q["retry_after"]} if "retry_after" in q else None
        return web.Response(status=code, text=f"status {code}", headers=headers)

    async def _respond(self, request: web.Request, resource: Resource,
                       path: str) -> web.StreamResponse:
        headers = list(resource.headers.items()) if isinstance(resource.headers, Mapping) \
            else list(resource.headers)
        ctype = resource.content_type or _CONTENT_TYPES.get(path.rsplit(".", 1)[-1].lower(),
                                                            "application/octet-stream")
        if request.method == "HEAD" and not resource.head:
            return web.Response(status=405, headers={"Allow": "GET"})
        return await self._deliver(request, resource.status,
                                   [("Content-Type", ctype), *headers], resource.body,
                                   cut=resource.cut, delivery=resource.delivery)

    async def _generated(self, request: web.Request) -> web.StreamResponse:
        fmt = request.path.rsplit(".", 1)[-1].lower()
        if fmt not in ("jpg", "png", "webp"):
            return web.Response(status=404)
        w = min(int(request.query.get("w", "320")), 4000)
        h = min(int(request.query.get("h", "240")), 4000)
        seed = int(request.query.get("seed", "0"))
        body = make_image(w, h, fmt, seed=seed, alpha=request.query.get("alpha") == "1")
        return await self._deliver(request, 200, [("Content-Type", _CONTENT_TYPES[fmt])], body)

    async def _deliver(self, request: web.Request, status: int,
                       headers: Sequence[tuple[str, str]], body: bytes,
                       cut: int | None = None,
                       delivery: Delivery | None = None) -> web.StreamResponse:
        """Write a response whole, or in ``delivery`` (default: the site's); ``cut``: drop
        the connection after that many body bytes (the headers promised all of them)."""
        delivery = delivery or self.delivery
        if cut is not None:
            delivery = Delivery(delivery.piece, delivery.pause, chunked=False)
        if delivery.polite and cut is None:
            return web.Response(status=status, body=body, headers=CIMultiDict(headers))
        stream = web.StreamResponse(status=status, headers=CIMultiDict(headers))
        if delivery.chunked:
            stream.enable_chunked_encoding()
        else:
            stream.content_length = len(body)
        await stream.prepare(request)
        sent = body if cut is None else body[:cut]
        step = delivery.piece or max(1, len(sent))
        for start in range(0, len(sent), step):
            if start:
                await asyncio.sleep(delivery.pause)
            await stream.write(sent[start:start + step])
        if cut is not None:
            await asyncio.sleep(0.05)  # let the bytes sent so far reach the client
            assert request.transport is not None
            request.transport.abort()
            return stream
        await stream.write_eof()
        host = request.transport.get_extra_info("sockname")[0] if request.transport else ""
        with self._lock:
            self.bodies_sent[(host, request.path)] += 1
        return stream

    def _tls_context(self) -> ssl.SSLContext:
        """A server context with a certificate for every host, from a new test CA."""
        import trustme  # a test dependency: only HTTPS sites need it

        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*self.hosts).configure_cert(context)
        with tempfile.NamedTemporaryFile("wb", suffix=".pem", prefix="consentfetch-test-ca-",
                                         delete=False) as pem:
            pem.write(ca.cert_pem.bytes())
        self.ca_file = pem.name
        return context

    # -- lifecycle -------------------------------------------------------------
    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        for host in self.hosts:
            site = web.TCPSite(self._runner, host, self.port, ssl_context=self._ssl)
            await site.start()
            if self.port == 0:
                # The port the OS chose: aiohttp has no public getter for it.
                sockets = getattr(site._server, "sockets", None)
                assert sockets, "the site did not bind"
                self.port = sockets[0].getsockname()[1]

    def start(self) -> LocalSite:
        """Start serving in a background thread; returns self."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:  # surfaced to the caller below
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name="consentfetch-localsite", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("local site did not start within 10 s")
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None
        if self.ca_file is not None:
            os.unlink(self.ca_file)
            self.ca_file = None


@contextmanager
def running_site(hosts: Sequence[str] = DEFAULT_HOSTS, *, delivery: Delivery = Delivery(),
                 tls: bool = False) -> Iterator[LocalSite]:
    """``with running_site() as site:`` — a started :class:`LocalSite`, stopped after."""
    site = LocalSite(hosts, delivery=delivery, tls=tls).start()
    try:
        yield site
    finally:
        site.stop()


def _raw(request: web.Request, data: bytes) -> web.StreamResponse:
    """Write ``data`` to the socket as it is and close it (aiohttp's own answer is dropped)."""
    assert request.transport is not None
    request.transport.write(data)
    request.transport.close()  # sends what is buffered, then closes
    return web.Response(status=500)  # never reaches the client: the transport is closing


async def _fault(request: web.Request, kind: str) -> web.StreamResponse:
    q = request.query
    if kind == "status":
        code = int(q.get("code", "500"))
        headers = {"Retry-After": q["retry_after"]} if "retry_after" in q else None
        return web.Response(status=code, text=f"status {code}", headers=headers)
    if kind == "slow":
        await asyncio.sleep(min(float(q.get("delay", "2")), 60))
        return web.Response(body=make_image(64, 64), content_type="image/jpeg")
    if kind == "drip":
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.content_length = 10_000
        await response.prepare(request)
        for _ in range(min(int(q.get("seconds", "30")), 120)):
            await response.write(b"\xff")
            await asyncio.sleep(1)
        return response
    if kind == "short":
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.content_length = 5000
        await response.prepare(request)
        await response.write(make_image(32, 32)[:1000])
        assert request.transport is not None
        request.transport.close()
        return response
    if kind == "reset_body":
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.content_length = 20_000
        await response.prepare(request)
        await response.write(b"\xff\xd8" + b"\0" * 5000)
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return response
    if kind == "reset":
        assert request.transport is not None
        request.transport.abort()
        return web.Response(status=500)
    if kind == "redirect":
        n = int(q.get("n", "1"))
        delay = min(float(q.get("delay", "0")), 60)
        target = q.get("to", "/gen/redirected.jpg")
        location = target if n <= 1 else \
            f"/fault/redirect?n={n - 1}&delay={delay}&to={target}"
        await asyncio.sleep(delay)
        raise web.HTTPFound(location)
    if kind == "loop":
        raise web.HTTPFound("/fault/loop")
    return web.Response(status=404, text="unknown fault")
