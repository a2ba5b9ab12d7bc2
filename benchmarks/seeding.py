"""A shard's seeding from origins.parquet, against the number of parts it finds.

    python benchmarks/seeding.py --parts 10 30 100

A run writes a part of origins.parquet per shard, so a late shard finds many
parts. This builds them in a temporary folder (``--per-part`` origins each,
three 404 files per origin, as a shard writes them, sorted and in row groups
of 64) and times :func:`~consentfetch.distribute.originphase.seed_policies`
for one shard of ``--hits`` origins spread over all the parts (origins another
worker process fetched) and ``--new`` origins in none. Each size is timed
four times in one process: the first with the process's index of the parts
still to build, then the best of three with it built, as a worker's later
shards find it; the policy cache is emptied before each. No network.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

from consentfetch.config import make_config
from consentfetch.distribute.originphase import seed_policies
from consentfetch.reader import InputRow, ShardInput
from consentfetch.workercache import process_cache
from consentfetch.writer import OutputDir

FILES = (("robots.txt", "robots.txt"), ("ai.txt", "ai.txt"),
         ("tdmrep.json", ".well-known/tdmrep.json"))


def host(index: int) -> str:
    return f"http://127.{1 + index // 62500}.{(index // 250) % 250}.{index % 250 + 1}:8080"


def origin_rows(origin: str, now: datetime) -> list[dict[str, Any]]:
    return [{"origin": origin, "kind": kind, "url": f"{origin}/{path}", "http_status": 404,
             "outcome": "absent", "error": None, "fetched_at": now, "size": 0,
             "sha256": None, "body": None, "unreached_reason": None, "truncated": False}
            for kind, path in FILES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, nargs="+", default=[10, 30, 100])
    parser.add_argument("--per-part", type=int, default=5000)
    parser.add_argument("--hits", type=int, default=2500)
    parser.add_argument("--new", type=int, default=2500)
    args = parser.parse_args()
    config = make_config(allow_private_networks=True)
    rng = random.Random(0)
    work = tempfile.mkdtemp(prefix="consentfetch-seeding-")
    try:
        out = OutputDir(f"{work}/out")
        most = max(args.parts)
        ids = list(range(most * args.per_part + args.new))
        rng.shuffle(ids)
        fresh = ids[most * args.per_part:]
        written = 0
        now = datetime.now(UTC)
        for parts in sorted(args.parts):
            for seq in range(written, parts):
                chunk = ids[seq * args.per_part:(seq + 1) * args.per_part]
                out.write_origin_part(
                    f"origins.parquet/20260101T000000000000Z-{seq:06d}.parquet",
                    [row for i in chunk for row in origin_rows(host(i), now)])
            written = parts
            known = rng.sample(ids[:parts * args.per_part], min(args.hits, parts * args.per_part))
            shard = ShardInput(0, [InputRow(f"{host(i)}/x.jpg", None, {}) for i in known + fresh])
            process_cache().clear()
            times = []
            for _ in range(4):
                process_cache().policies.clear()
                started = time.perf_counter()
                seeded = seed_policies(out, shard, config)
                times.append(time.perf_counter() - started)
            print(f"{parts} parts ({parts * args.per_part} origins): {seeded} seeded, "
                  f"first {times[0]:.3f} s (index built), then {min(times[1:]):.3f} s",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
