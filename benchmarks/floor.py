"""The cost floor on this machine, and how close a consentfetch run comes to it.

    python benchmarks/floor.py              # corpus of 2000, then a full run for comparison

1. **Image floor**: per-image CPU of decode + resize (256, border) + encode
   (jpg q95) + tar write alone, no network, on one core. This is the best
   Pillow path: the one consentfetch uses (``consentfetch.image``, JPEG draft
   then BOX), with a plain ``tarfile`` stream into memory.
2. **Fetch ceiling**: an aiohttp client with keep-alive, 64 requests in
   flight, fetching every corpus URL from the local site and doing nothing
   else. It gives requests/s and client CPU per request.
3. **A real run**: ``consentfetch download`` over the same URLs, with one
   process. Its CPU per image is set against floor + fetch cost: the fraction
   of the floor reached.
4. **Startup**: from launching ``consentfetch download`` to its first request
   reaching the site (robots.txt), with 1 and with 2 worker processes.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import io
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import aiohttp
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CORPUS_HOSTS, SiteProcess, corpus_urls, measure, setup_corpus_site  # noqa: E402
from corpus import build_corpus  # noqa: E402

from consentfetch.image import ResizedImage, ResizeOptions, process_image  # noqa: E402

OPTIONS = ResizeOptions(image_size=256, resize_mode="border", encode_format="jpg",
                        encode_quality=95)


def image_floor(bodies: list[bytes], repeats: int) -> list[float]:
    """CPU seconds per image of decode+resize+encode+tar, one pass per repeat."""
    per_pass = []
    for _ in range(repeats):
        sink = io.BytesIO()
        start = time.process_time()
        with tarfile.open(fileobj=sink, mode="w") as tar:
            for i, body in enumerate(bodies):
                image = process_image(body, OPTIONS)
                if isinstance(image, ResizedImage):
                    info = tarfile.TarInfo(f"{i:09d}.jpg")
                    info.size = len(image.data)
                    tar.addfile(info, io.BytesIO(image.data))
        per_pass.append((time.process_time() - start) / len(bodies))
    return per_pass


async def _fetch_all(urls: list[str], concurrency: int) -> int:
    connector = aiohttp.TCPConnector(limit=concurrency)
    got = 0
    queue: asyncio.Queue[str] = asyncio.Queue()
    for url in urls:
        queue.put_nowait(url)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            nonlocal got
            while not queue.empty():
                async with session.get(queue.get_nowait()) as response:
                    got += len(await response.read())
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return got


def fetch_ceiling(urls: list[str], concurrency: int) -> tuple[float, float]:
    """(requests per second, client CPU seconds per request)."""
    wall, cpu = time.monotonic(), time.process_time()
    asyncio.run(_fetch_all(urls, concurrency))
    return len(urls) / (time.monotonic() - wall), (time.process_time() - cpu) / len(urls)


def startup_to_first_request(processes: int, repeats: int) -> list[float]:
    """Seconds from process launch to the first request at the site."""
    import subprocess

    from consentfetch.testsite import make_image, running_site
    times = []
    with running_site(("127.0.0.160",)) as site, tempfile.TemporaryDirectory() as tmp:
        url = site.put(0, "/a.jpg", make_image(64, 64))
        url_list = Path(tmp) / "one.parquet"
        pq.write_table(pa.table({"url": [url] * 4}), url_list)
        for i in range(repeats):
            site.log.clear()
            launched = time.monotonic()  # CLOCK_MONOTONIC: shared by every process
            subprocess.run([sys.executable, "-m", "consentfetch", "download", str(url_list),
                            str(Path(tmp) / f"out{i}"), "--allow-private-networks",
                            "--processes", str(processes), "--shard-size", "2"],
                           check=True, capture_output=True)
            times.append(site.log[0][0] - launched)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()

    for processes in (1, 2):
        startup = statistics.median(startup_to_first_request(processes, args.repeats))
        print(f"startup to first request, {processes} process(es): {1000 * startup:.0f} ms "
              f"(median of {args.repeats})")

    files = build_corpus(n=args.n)
    bodies = [p.read_bytes() for p in files]
    floor = statistics.median(image_floor(bodies, args.repeats))
    print(f"image floor (decode + resize + encode + tar, 1 core): {1000 * floor:.2f} ms "
          f"CPU/image, i.e. {1 / floor:.0f} images/s per core (median of {args.repeats})")

    setup = functools.partial(setup_corpus_site, [str(p) for p in files])
    with SiteProcess(CORPUS_HOSTS, setup) as port, tempfile.TemporaryDirectory() as tmp:
        urls = corpus_urls(files, port)
        ceilings = [fetch_ceiling(urls, args.concurrency) for _ in range(args.repeats)]
        rate = statistics.median(c[0] for c in ceilings)
        fetch_cpu = statistics.median(c[1] for c in ceilings)
        print(f"fetch ceiling (aiohttp, keep-alive, {args.concurrency} in flight): "
              f"{rate:.0f} requests/s, {1000 * fetch_cpu:.2f} ms client CPU/request")

        url_list = Path(tmp) / "urls.parquet"
        pq.write_table(pa.table({"url": urls}), url_list)
        runs = []
        for _ in range(args.repeats):
            out = Path(tmp) / "out"
            stats = measure([sys.executable, "-m", "consentfetch", "download", str(url_list),
                             str(out), "--processes", "1", "--allow-private-networks",
                             "--overwrite", "--retries", "0",
                             "--concurrency", str(args.concurrency)])
            if stats.returncode != 0:
                sys.exit(stats.stderr[-2000:])
            from consentfetch import read_audit
            images = read_audit(str(out), status="success").num_rows
            runs.append((stats.cpu / images, images / stats.wall))
        ours = statistics.median(r[0] for r in runs)
        speed = statistics.median(r[1] for r in runs)
    reference = floor + fetch_cpu
    print(f"consentfetch run (1 process): {1000 * ours:.2f} ms CPU/image, {speed:.0f} images/s")
    print(f"floor + fetch = {1000 * reference:.2f} ms; consentfetch uses "
          f"x{ours / reference:.2f} of it (x{ours / floor:.2f} of the image floor alone); "
          f"it reaches {100 * reference / ours:.0f}% of the floor's speed")


if __name__ == "__main__":
    main()
