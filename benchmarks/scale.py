"""Throughput and peak memory at growing input sizes: linear time, flat memory.

    python benchmarks/scale.py                      # 10k, 100k and 1M rows
    python benchmarks/scale.py --rows 100000 1000000 --processes 2

The input is mostly cheap URLs on a local multi-origin site: 95% answer 404
and 5% are tiny images, spread over 8 origins (each with a robots.txt). Each
size is downloaded by a real ``consentfetch download`` subprocess. The script
reads every process's peak RSS (VmHWM) and the CPU time of the whole process
tree, then prints rows/s and the RSS ratio of each size to the smallest.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SiteProcess, measure  # noqa: E402

from consentfetch.testsite import LocalSite, make_image  # noqa: E402

HOSTS = tuple(f"127.0.0.{i}" for i in range(100, 108))
IMAGES_PER_HOST = 50


def setup_site(site: LocalSite) -> None:
    for h in range(len(HOSTS)):
        site.put(h, "/robots.txt", "User-agent: *\nDisallow: /private/\n")
        for i in range(IMAGES_PER_HOST):
            site.put(h, f"/img/{i}.jpg", make_image(24, 24, seed=i))


def write_input(path: Path, rows: int, port: int) -> None:
    """Stream the URL list to parquet in batches (the benchmark's own memory stays flat)."""
    schema = pa.schema([("url", pa.string()), ("caption", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, 100_000):
            urls, captions = [], []
            for i in range(start, min(rows, start + 100_000)):
                host = HOSTS[i % len(HOSTS)]
                path_part = f"/img/{i % IMAGES_PER_HOST}.jpg" if i % 20 == 0 \
                    else f"/missing/{i}.jpg"
                urls.append(f"http://{host}:{port}{path_part}")
                captions.append(f"row {i}")
            writer.write_table(pa.table({"url": urls, "caption": captions}, schema=schema))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--runs", type=int, default=1, help="runs per size (median reported)")
    args = parser.parse_args()

    results = []
    with SiteProcess(HOSTS, setup_site) as port, tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            url_list = Path(tmp) / f"urls_{rows}.parquet"
            write_input(url_list, rows, port)
            runs = []
            for _ in range(args.runs):
                out = Path(tmp) / f"out_{rows}"
                shutil.rmtree(out, ignore_errors=True)
                stats = measure([
                    sys.executable, "-m", "consentfetch", "download", str(url_list), str(out),
                    "--caption-col", "caption", "--allow-private-networks", "--image-size", "64",
                    "--processes", str(args.processes), "--concurrency", str(args.concurrency),
                    "--per-host-concurrency", "16", "--retries", "0"])
                if stats.returncode != 0:
                    sys.exit(f"download of {rows} rows failed:\n{stats.stderr[-2000:]}")
                runs.append(stats)
                shutil.rmtree(out, ignore_errors=True)
            wall = statistics.median(r.wall for r in runs)
            cpu = statistics.median(r.cpu for r in runs)
            rss = statistics.median(r.max_rss_mib for r in runs)
            results.append((rows, wall, cpu, rss))
            print(f"{rows:>9} rows: {rows / wall:8.0f} rows/s, {1e6 * cpu / rows:7.1f} µs CPU/row, "
                  f"peak RSS of the largest process {rss:6.1f} MiB "
                  f"(processes: {len(runs[0].peak_rss_mib)})", flush=True)
    base_rows, base_wall, _, base_rss = results[0]
    print("\nscaling against the smallest run:")
    for rows, wall, _, rss in results:
        print(f"{rows:>9} rows: time x{wall / base_wall:6.2f} for rows x{rows / base_rows:6.1f}; "
              f"peak RSS x{rss / base_rss:5.2f}")


if __name__ == "__main__":
    main()
