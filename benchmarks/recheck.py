"""What a recheck costs: requests and wall time, compared with the download it rechecks.

N images spread over M origins of a local site (in a process of its own) are
downloaded once; the same run is then rechecked without and with --headers.
Every origin allows everything, so nothing is withdrawn and every sample goes
through every check. Requests are counted by the client (``Report`` has no
request count, so a download's are derived: one image request per URL plus
three origin files per origin).

    python benchmarks/recheck.py --n 2000 --origins 32 --repeats 3
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SiteProcess  # noqa: E402

from consentfetch import fetch_shards, recheck_shards  # noqa: E402
from consentfetch.testsite import LocalSite  # noqa: E402


def hosts_for(origins: int) -> list[str]:
    if not 1 <= origins <= 250:
        raise SystemExit("--origins: 1 to 250")
    return [f"127.0.0.{i + 2}" for i in range(origins)]


def setup(hosts: list[str], site: LocalSite) -> None:
    for host in hosts:
        site.put(host, "/robots.txt", "User-agent: *\nAllow: /\n")


def write_input(path: Path, hosts: list[str], port: int, n: int) -> str:
    urls = [f"http://{hosts[i % len(hosts)]}:{port}/gen/{i}.jpg?w=320&h=240&seed={i % 97}"
            for i in range(n)]
    pq.write_table(pa.table({"url": urls}), path)
    return str(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000, help="images")
    p.add_argument("--origins", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="rechecks of each kind (median)")
    args = p.parse_args()
    hosts = hosts_for(args.origins)
    options = {"allow_private_networks": True, "processes": 1, "shard_size": 1000}
    with SiteProcess(hosts, functools.partial(setup, hosts)) as port, \
            tempfile.TemporaryDirectory() as tmp:
        urls = write_input(Path(tmp) / "urls.parquet", hosts, port, args.n)
        out = str(Path(tmp) / "out")
        t0 = time.monotonic()
        report = fetch_shards(urls, out, **options)
        download = time.monotonic() - t0
        print(f"download: {report.total} URLs on {args.origins} origins, "
              f"{report.counts.get('success', 0)} samples in {download:.2f} s; requests: "
              f"{report.total} images + {3 * args.origins} origin files")
        for headers in (False, True):
            times, last = [], None
            for _ in range(args.repeats):
                last = recheck_shards(out, headers=headers, allow_private_networks=True)
                times.append(last.duration)
            assert last is not None
            requests = sum(last.requests.values())
            median = statistics.median(times)
            print(f"recheck{' --headers' if headers else ''}: {last.total} samples, "
                  f"{last.withdrawn} withdrawn, {requests} requests "
                  f"({', '.join(f'{n} {k}' for k, n in last.requests.items())}), "
                  f"median {median:.2f} s of {len(times)} = {median / download:.1%} of the "
                  f"download's time")


if __name__ == "__main__":
    main()
