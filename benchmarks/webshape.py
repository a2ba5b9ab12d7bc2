"""The web's shape: a long tail of hosts, latency, dead, stalling and dripping hosts.

    python benchmarks/webshape.py                       # 40,000 rows, consentfetch vs img2dataset
    python benchmarks/webshape.py --rows 4000 --rounds 1 --no-img2dataset   # quick look
    python benchmarks/webshape.py --rows 4000 --rounds 1 --no-img2dataset \
        --cf-arg=--per-host-concurrency=4                 # A/B of a consentfetch option
    python benchmarks/webshape.py --rows 20000 --shard-size 5000   # several shards per process
    python benchmarks/webshape.py --bookkeeping --rows 100000 1000000     # many origins, no latency

One server process, bound to 0.0.0.0, plays every origin: each address
127.a.b.c is an origin of its own (Linux routes all of 127.0.0.0/8 to
loopback), told apart by the address a connection arrived on. The input is
shaped like a LAION-style URL list:

* half the rows on about 100 big hosts, one of them a hot host with 8% of
  all rows, popularity falling off as 1/rank (Zipf);
* the other half on a long tail: a pool of 0.35 × rows hosts drawn
  uniformly, so most tail hosts get one or two rows;
* every origin has a round-trip time drawn from a log-normal distribution
  (median 60 ms, p90 250 ms): each request waits one round trip before its
  headers, and a new connection one more (the TCP handshake);
* 2% of hosts are dead (the connection is reset), 1% stall (no headers for
  120 s), 0.5% drip (a body at 200 bytes/s); a few of the big hosts are among them;
* robots.txt: 70% answer 404, 20% allow all, 8% close ``/private/`` (where
  1 row in 20 of theirs points), 2% answer 500; ai.txt and tdmrep.json 404;
* images are real JPEGs of 400–800 px (a pool of 48, 20–70 kB).

Both tools read the same parquet and run with 2 processes, 256 px, border,
jpg q95, each with its own default concurrency and retries. Rounds
alternate. For every run the script reports images/s, CPU seconds per image,
peak RSS, requests per origin file (robots.txt, ai.txt, tdmrep.json) as the
server counted them, the most requests one host had in flight at once (and
the hot host's), and the tail: how much of the wall time came after 95% of
the images had been served. ``--timeline`` also prints requests in flight
over time.

``--bookkeeping`` measures what grows with the number of origins instead:
no latency, no faults, every robots.txt 404, 1 row in 20 an image and the
rest 404s, one origin per 3.3 rows; consentfetch only; time per 1,000 rows
and peak RSS at each ``--rows`` size. ``--open-files-limit N`` runs
consentfetch under ``ulimit -n N`` and counts the rows that failed with "Too
many open files".
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import math
import multiprocessing
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RunStats, measure  # noqa: E402

CONTROL = "127.0.0.99"  # the address the script asks for the server's counters
HOT_SHARE, BIG_SHARE, BIG_HOSTS = 0.08, 0.42, 100
DEAD, STALL, DRIP = 0.02, 0.01, 0.005


@dataclass(frozen=True)
class Shape:
    """Everything that decides the workload; the server and the input agree on it."""

    rows: int
    latency: bool = True
    faults: bool = True
    seed: int = 0

    @property
    def tail_hosts(self) -> int:
        return max(1, int(self.rows * 0.35))

    @property
    def origins(self) -> int:
        return BIG_HOSTS + self.tail_hosts


def address(index: int) -> str:
    """The loopback address of origin ``index`` (127.1.0.1, 127.1.0.2, ...)."""
    a, rest = divmod(index, 250 * 250)
    b, c = divmod(rest, 250)
    return f"127.{1 + a}.{b}.{c + 1}"


def index_of(addr: str) -> int:
    _, a, b, c = (int(x) for x in addr.split("."))
    return (a - 1) * 250 * 250 + b * 250 + (c - 1)


@dataclass(frozen=True)
class Origin:
    rtt: float
    behaviour: str  # ok, dead, stall, drip
    robots: str  # 404, allow, private, 500


def origin(shape: Shape, index: int) -> Origin:
    """Origin ``index``'s latency, behaviour and robots.txt, the same in every process."""
    rng = random.Random(f"{shape.seed}:{index}")
    rtt = min(2.0, 0.06 * math.exp(1.113 * rng.gauss(0, 1))) if shape.latency else 0.0
    behaviour = "ok"
    if shape.faults and index != 0:  # the hot host itself stays healthy
        draw = rng.random()
        behaviour = "dead" if draw < DEAD else "stall" if draw < DEAD + STALL \
            else "drip" if draw < DEAD + STALL + DRIP else "ok"
    robots = "404"
    if shape.faults:
        draw = rng.random()
        robots = "allow" if draw < 0.20 else "private" if draw < 0.28 \
            else "500" if draw < 0.30 else "404"
    return Origin(rtt, behaviour, robots)


def input_rows(shape: Shape, port: int) -> pa.Table:
    """The URL list: hot host, big hosts by 1/rank, long tail; shuffled."""
    rng = random.Random(shape.seed)
    weights = [1 / rank for rank in range(1, BIG_HOSTS)]
    cumulative = list(_accumulate(weights))
    urls, captions = [], []
    for i in range(shape.rows):
        draw = rng.random()
        if draw < HOT_SHARE:
            host = 0
        elif draw < HOT_SHARE + BIG_SHARE:
            host = 1 + bisect.bisect(cumulative, rng.random() * cumulative[-1])
        else:
            host = BIG_HOSTS + rng.randrange(shape.tail_hosts)
        if not shape.faults:  # bookkeeping: 1 row in 20 an image, the rest 404
            path = f"/img/{i}.jpg" if i % 20 == 0 else f"/missing/{i}.jpg"
        else:
            path = f"/private/{i}.jpg" if i % 20 == 7 else f"/img/{i}.jpg"
        urls.append(f"http://{address(host)}:{port}{path}")
        captions.append(f"row {i}")
    return pa.table({"url": urls, "caption": captions})


def write_input(shape: Shape, port: int, path: Path) -> int:
    """Write the URL list to ``path``; returns how many origins it names."""
    table = input_rows(shape, port)
    pq.write_table(table, path)
    return len({u.split("/")[2] for u in table.column("url").to_pylist()})


def _accumulate(values: list[float]) -> list[float]:
    total, out = 0.0, []
    for v in values:
        total += v
        out.append(total)
    return out


# -- the server ---------------------------------------------------------------------


@dataclass
class Counters:
    """What the server saw, reset before every run."""

    started: float = field(default_factory=time.monotonic)
    requests: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    per_host: Counter[str] = field(default_factory=Counter)
    max_per_host: int = 0
    max_hot_host: int = 0
    images_done: list[float] = field(default_factory=list)  # seconds since start
    # what is in flight, by the origin's behaviour and the request's kind ("stall robots.txt")
    in_flight_by: Counter[str] = field(default_factory=Counter)
    # (seconds since start, requests in flight, the in_flight_by entries that are not 0)
    timeline: list[tuple[float, int, dict[str, int]]] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {"requests": dict(self.requests), "max_per_host": self.max_per_host,
                "max_hot_host": self.max_hot_host, "images_done": self.images_done,
                "timeline": self.timeline}


def serve(shape: Shape, ready: Any, stop: Any) -> None:
    """The server process: every origin on one port, plus the control address."""
    asyncio.run(_serve(shape, ready, stop))


async def _serve(shape: Shape, ready: Any, stop: Any) -> None:
    from aiohttp import web

    from consentfetch.testsite import make_image

    rng = random.Random(1)
    pool = [make_image(w, int(w * 0.75), seed=s)
            for s, w in enumerate(rng.choice(range(400, 801, 20)) for _ in range(48))]
    counters = Counters()
    seen: set[tuple[str, tuple[str, int]]] = set()  # (origin, client address and port)
    hot = address(0)

    async def handle(request: web.Request) -> web.StreamResponse:
        nonlocal counters
        host = request.transport.get_extra_info("sockname")[0] if request.transport else ""
        if host == CONTROL:
            report, counters = counters.report(), Counters()
            return web.json_response(report)
        info = origin(shape, index_of(host))
        kind = _kind(request.path)
        counters.requests[kind] += 1
        counters.in_flight += 1
        what = f"{info.behaviour} {kind}"
        counters.in_flight_by[what] += 1
        counters.per_host[host] += 1
        counters.max_per_host = max(counters.max_per_host, counters.per_host[host])
        if host == hot:
            counters.max_hot_host = max(counters.max_hot_host, counters.per_host[host])
        mine = counters
        try:
            wait = info.rtt
            peer = request.transport.get_extra_info("peername") if request.transport else None
            if peer is not None and (host, peer[:2]) not in seen:
                seen.add((host, peer[:2]))
                wait += info.rtt  # the handshake of a new connection
            await asyncio.sleep(wait)
            return await _answer(request, info, kind, pool, mine)
        finally:
            mine.in_flight -= 1
            mine.in_flight_by[what] -= 1
            mine.per_host[host] -= 1
            if not mine.per_host[host]:
                del mine.per_host[host]

    async def sample() -> None:
        while True:
            await asyncio.sleep(0.5)
            counters.timeline.append((round(time.monotonic() - counters.started, 1),
                                      counters.in_flight,
                                      {k: n for k, n in counters.in_flight_by.items() if n}))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "0.0.0.0", 0, backlog=4096)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    sampler = asyncio.ensure_future(sample())
    ready.put(port)
    while not stop.is_set():
        await asyncio.sleep(0.2)
    sampler.cancel()
    await runner.cleanup()


def _kind(path: str) -> str:
    if path in ("/robots.txt", "/ai.txt", "/.well-known/tdmrep.json"):
        return path.rsplit("/", 1)[-1]
    return "image"


async def _answer(request: Any, info: Origin, kind: str, pool: list[bytes],
                  counters: Counters) -> Any:
    from aiohttp import web

    if info.behaviour == "dead":
        assert request.transport is not None
        request.transport.abort()
        return web.Response(status=500)
    if info.behaviour == "stall":
        await asyncio.sleep(120)
        return web.Response(status=503)
    if kind == "robots.txt":
        if info.robots in ("404", "500"):
            return web.Response(status=int(info.robots), text="no")
        rules = "Disallow: /private/\n" if info.robots == "private" else "Allow: /\n"
        return web.Response(text="User-agent: *\n" + rules)
    if kind != "image" or request.path.startswith("/missing/"):
        return web.Response(status=404, text="not found")
    body = pool[hash(request.path) % len(pool)]
    if info.behaviour == "drip":
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.content_length = len(body)
        await response.prepare(request)
        for start in range(0, min(len(body), 8000), 100):  # 200 bytes/s, at most 40 s
            await response.write(body[start:start + 100])
            await asyncio.sleep(0.5)
        request.transport.abort()
        return response
    response = web.Response(body=body, content_type="image/jpeg")
    counters.images_done.append(time.monotonic() - counters.started)
    return response


class Server:
    """``with Server(shape) as port:`` — the web-shaped server in a process of its own."""

    def __init__(self, shape: Shape) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._ready: Any = ctx.Queue()
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=serve, args=(shape, self._ready, self._stop),
                                 daemon=True)
        self.port = 0

    def __enter__(self) -> Server:
        self._proc.start()
        self.port = self._ready.get(timeout=120)
        return self

    def counters(self) -> dict[str, Any]:
        """The server's counters since the last call (and a fresh start for the next run)."""
        url = f"http://{CONTROL}:{self.port}/"
        with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 (loopback only)
            return json.loads(answer.read())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()


# -- the runs -------------------------------------------------------------------------


def consentfetch_cmd(urls: Path, out: Path, processes: int,
                     shard_size: int | None = None) -> list[str]:
    sharding = [] if shard_size is None else ["--shard-size", str(shard_size)]
    return [sys.executable, "-m", "consentfetch", "download", str(urls), str(out),
            "--caption-col", "caption", "--image-size", "256", "--resize-mode", "border",
            "--encode-format", "jpg", "--encode-quality", "95", "--processes", str(processes),
            "--allow-private-networks", "--overwrite", "--consent", "strict", *sharding]


def img2dataset_cmd(venv: Path, urls: Path, out: Path, processes: int,
                    shard_size: int | None = None) -> list[str]:
    sharding = [] if shard_size is None else ["--number_sample_per_shard", str(shard_size)]
    return [str(venv / "bin" / "img2dataset"), "--url_list", str(urls),
            "--input_format", "parquet", "--url_col", "url", "--caption_col", "caption",
            "--output_format", "webdataset", "--output_folder", str(out),
            "--image_size", "256", "--resize_mode", "border", "--encode_format", "jpg",
            "--encode_quality", "95", "--processes_count", str(processes),
            "--enable_wandb", "False", *sharding]


@dataclass
class Run:
    tool: str
    images: int
    stats: RunStats
    seen: dict[str, Any]
    origins: int

    @property
    def images_per_s(self) -> float:
        return self.images / self.stats.wall

    @property
    def tail_share(self) -> float:
        """The share of the wall time after 95% of the images had been served."""
        done = sorted(self.seen["images_done"])
        if not done:
            return 1.0
        t95 = done[max(0, math.ceil(0.95 * len(done)) - 1)]
        return max(0.0, (self.stats.wall - t95) / self.stats.wall)

    def line(self) -> str:
        req = self.seen["requests"]
        per_file = ", ".join(f"{k} {req.get(k, 0) / self.origins:.2f}"
                             for k in ("robots.txt", "ai.txt", "tdmrep.json"))
        return (f"{self.tool:<13} {self.images:6d} images {self.stats.wall:7.1f} s "
                f"{self.images_per_s:7.1f} images/s "
                f"{1000 * self.stats.cpu / max(1, self.images):6.2f} ms CPU/image, peak RSS "
                f"{self.stats.max_rss_mib:5.0f} MiB (sum {self.stats.total_rss_mib:5.0f}), "
                f"most open files in one process {self.stats.max_files}; "
                f"requests per origin: {per_file}; most in flight to one host "
                f"{self.seen['max_per_host']} (hot host {self.seen['max_hot_host']}); "
                f"tail after 95% of images: {100 * self.tail_share:.0f}% of the run")


def successes(out: Path) -> int:
    return sum(json.loads(p.read_text())["successes"] for p in out.glob("*_stats.json"))


def out_of_files(out: Path) -> int:
    """Rows of the audit whose evidence says the process ran out of file descriptors."""
    found = 0
    for part in out.glob("[0-9]*.parquet"):
        evidence = pq.read_table(part, columns=["evidence"]).column("evidence").to_pylist()
        found += sum(1 for e in evidence if e and "Too many open files" in e)
    return found


def files_limit(limit: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that sets the child's open-file limit (``ulimit -n``), or None."""
    if limit is None:
        return None

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    return apply


def compare(args: argparse.Namespace) -> None:
    shape = Shape(args.rows[0])
    venv = None
    if not args.no_img2dataset:
        from compare_img2dataset import IMG2DATASET_VERSION, img2dataset_venv
        venv = img2dataset_venv(IMG2DATASET_VERSION)
    work = Path(tempfile.mkdtemp(prefix="consentfetch-webshape-"))
    runs: list[Run] = []
    try:
        with Server(shape) as server:
            urls = work / "urls.parquet"
            origins = write_input(shape, server.port, urls)
            print(f"{shape.rows} rows over {origins} origins; server on port {server.port}",
                  flush=True)
            tools = {"consentfetch": consentfetch_cmd(urls, work / "cf", args.processes,
                                                      args.shard_size) + list(args.cf_arg)}
            if venv is not None:
                tools["img2dataset"] = img2dataset_cmd(venv, urls, work / "i2d", args.processes,
                                                       args.shard_size)
            for round_no in range(1, args.rounds + 1):
                for tool, cmd in tools.items():
                    out = work / ("cf" if tool == "consentfetch" else "i2d")
                    shutil.rmtree(out, ignore_errors=True)
                    server.counters()  # a fresh start
                    stats = measure(cmd)
                    if stats.returncode != 0:
                        sys.exit(f"{tool} failed:\n{stats.stderr[-3000:]}")
                    runs.append(Run(tool, successes(out), stats, server.counters(), origins))
                    print(f"round {round_no} {runs[-1].line()}", flush=True)
                    if args.timeline:
                        print("  in flight over time (s, requests, by origin behaviour and "
                              "request kind):")
                        for at, count, by in runs[-1].seen["timeline"][::4]:
                            print(f"    {at:6.1f} {count:4d} {by}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _summary(runs)


def _summary(runs: list[Run]) -> None:
    by_tool: dict[str, list[Run]] = {}
    for run in runs:
        by_tool.setdefault(run.tool, []).append(run)
    print("\nmedians:")
    for tool, mine in by_tool.items():
        rates = [r.images_per_s for r in mine]
        print(f"  {tool:<13} {statistics.median(rates):7.1f} images/s (spread "
              f"{min(rates):.1f}–{max(rates):.1f}), CPU "
              f"{statistics.median(r.stats.cpu / max(1, r.images) * 1000 for r in mine):.2f} "
              f"ms/image, peak RSS {statistics.median(r.stats.max_rss_mib for r in mine):.0f} "
              f"MiB, tail {100 * statistics.median(r.tail_share for r in mine):.0f}%")
    if {"consentfetch", "img2dataset"} <= set(by_tool):
        pairs = zip(by_tool["consentfetch"], by_tool["img2dataset"], strict=False)
        ratios = [a.images_per_s / b.images_per_s for a, b in pairs]
        print(f"  consentfetch / img2dataset images/s: median x{statistics.median(ratios):.2f} "
              f"(per round {', '.join(f'x{r:.2f}' for r in ratios)})")


def bookkeeping(args: argparse.Namespace) -> None:
    results = []
    for rows in args.rows:
        shape = Shape(rows, latency=False, faults=False)
        work = Path(tempfile.mkdtemp(prefix="consentfetch-bookkeeping-"))
        try:
            with Server(shape) as server:
                urls = work / "urls.parquet"
                origins = write_input(shape, server.port, urls)
                stats = measure(consentfetch_cmd(urls, work / "cf", args.processes),
                                preexec_fn=files_limit(args.open_files_limit))
                if stats.returncode != 0:
                    sys.exit(f"consentfetch failed:\n{stats.stderr[-3000:]}")
                early, late = shard_pace(work / "cf")
                if args.open_files_limit is not None:
                    print(f"under ulimit -n {args.open_files_limit}: {successes(work / 'cf')} "
                          f"images, {out_of_files(work / 'cf')} rows failed with "
                          f"'Too many open files'", flush=True)
            per_k = 1000 * stats.wall / rows
            cpu_per_k = 1000 * stats.cpu / rows
            results.append((rows, origins, per_k, stats.total_rss_mib, cpu_per_k))
            print(f"{rows} rows over {origins} origins: {stats.wall:.1f} s, {per_k:.2f} s per "
                  f"1,000 rows ({cpu_per_k:.2f} CPU s), peak RSS {stats.max_rss_mib:.0f} MiB "
                  f"largest process, {stats.total_rss_mib:.0f} MiB summed, most open files "
                  f"in one process {stats.max_files}; within the run, s between shard "
                  f"completions: first quarter {early:.1f}, last quarter {late:.1f} "
                  f"(x{late / early:.2f})", flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    first = results[0]
    for rows, _origins, per_k, total, cpu_per_k in results[1:]:
        print(f"{rows} / {first[0]} rows: time per row x{per_k / first[2]:.2f}, CPU per row "
              f"x{cpu_per_k / first[4]:.2f}, summed peak RSS x{total / first[3]:.2f}")


def shard_pace(out: Path) -> tuple[float, float]:
    """Mean seconds between shard completions over the first and the last quarter of
    the run's shards (from the ``_stats.json`` end times): what a shard costs early
    and late in one run, everything included (seeding, the main process's share)."""
    ends = sorted(json.loads(p.read_text())["end_time"] for p in out.glob("*_stats.json"))
    quarter = max(1, (len(ends) - 1) // 4)
    gaps = [b - a for a, b in itertools.pairwise(ends)]  # the first shard's start-up left out
    if not gaps:
        return math.nan, math.nan
    return statistics.mean(gaps[:quarter]), statistics.mean(gaps[-quarter:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--shard-size", type=int, default=None,
                        help="rows per shard for both tools (default: each tool's, 10,000)")
    parser.add_argument("--no-img2dataset", action="store_true")
    parser.add_argument("--timeline", action="store_true")
    parser.add_argument("--cf-arg", action="append", default=[],
                        help="an extra consentfetch download argument (repeat), for A/B runs")
    parser.add_argument("--bookkeeping", action="store_true")
    parser.add_argument("--open-files-limit", type=int, default=None,
                        help="with --bookkeeping: run consentfetch under this ulimit -n")
    args = parser.parse_args()
    if args.bookkeeping:
        args.rows = args.rows or [100_000, 1_000_000]
        bookkeeping(args)
    else:
        args.rows = args.rows or [40_000]
        compare(args)


if __name__ == "__main__":
    main()
