"""What applying a recheck costs: time, bytes rewritten and peak RSS, vs copying the run.

A dataset is written directly with the shard writer (no network: applying
reads and writes files only), ``--samples`` samples of ``--kb`` kB each in
shards of ``--shard-size``; a recheck withdraws every ``--every``-th sample
(or one sample per shard with ``--one-per-shard``), and ``apply_recheck``
runs in a child process of its own, in place and then into a new folder.
The floor it is compared with: copying the whole run folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import measure  # noqa: E402

from consentfetch.consent.decision import Status
from consentfetch.layout import compute_key
from consentfetch.reader import InputRow
from consentfetch.recheck.table import RECHECK_SCHEMA, recheck_file
from consentfetch.writer import OutputDir, RowResult, ShardWriter

STAMP = "20270101T000000Z"
CHILD = """
import json, pathlib, sys, time
from consentfetch.recheck.apply import apply_recheck
t0 = time.perf_counter()
report = apply_recheck(sys.argv[1], output=sys.argv[2] or None)
pathlib.Path(sys.argv[3]).write_text(json.dumps({
    "seconds": time.perf_counter() - t0, "withdrawn": report.samples_withdrawn,
    "rewritten": report.shards_rewritten, "removed": report.bytes_removed}))
"""


def build(root: Path, samples: int, shard_size: int, kb: int, withdraw: set[int]) -> None:
    out = OutputDir(str(root))
    rng = random.Random(0)
    rows = []
    for shard_id in range(-(-samples // shard_size)):
        writer = ShardWriter(out, shard_id, [], encode_format="jpg", save_caption=True)
        for index in range(min(shard_size, samples - shard_id * shard_size)):
            key = compute_key(shard_id, index, shard_size)
            image = rng.randbytes(kb * 1024)
            digest = hashlib.sha256(image).hexdigest()
            url = f"https://example.com/{key}.jpg"
            writer.add(key, InputRow(url, f"caption {key}", {}),
                       RowResult(Status.SUCCESS, image=image, sha256=digest, width=64, height=64))
            withdrawn = shard_id * shard_size + index in withdraw
            rows.append({"shard": shard_id, "key": key, "url": url, "sha256": digest,
                         "previous_status": "success",
                         "status": "disallowed" if withdrawn else "success",
                         "reason": "robots_disallowed" if withdrawn else None,
                         "evidence": "robots.txt line 2: Disallow: /" if withdrawn else None,
                         "decided_at": datetime.now(UTC)})
        writer.commit()
    (root / recheck_file(STAMP)).parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=RECHECK_SCHEMA), root / recheck_file(STAMP))


def child(source: Path, output: str, result: Path) -> dict[str, float]:
    """apply_recheck in a process of its own: its figures and the process's peak RSS."""
    stats = measure([sys.executable, "-c", CHILD, str(source), output, str(result)])
    if stats.returncode != 0:
        raise SystemExit(stats.stderr[-3000:])
    figures: dict[str, float] = json.loads(result.read_text())
    figures["rss_mib"] = stats.max_rss_mib
    return figures


def folder_mb(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--kb", type=int, default=20)
    parser.add_argument("--every", type=int, default=100, help="withdraw every n-th sample")
    parser.add_argument("--one-per-shard", action="store_true")
    args = parser.parse_args()
    step = args.shard_size if args.one_per_shard else args.every
    withdraw = set(range(step // 2, args.samples, step))
    with tempfile.TemporaryDirectory(prefix="cf-apply-") as tmp:
        run = Path(tmp) / "run"
        build(run, args.samples, args.shard_size, args.kb, withdraw)
        mb = folder_mb(run)
        print(f"{args.samples} samples of {args.kb} kB in shards of {args.shard_size}: "
              f"{mb:.1f} MB; {len(withdraw)} withdrawn")
        t0 = time.perf_counter()
        shutil.copytree(run, Path(tmp) / "copy")
        copy = time.perf_counter() - t0
        print(f"  copy of the run folder (floor):  {copy:6.2f} s")
        for label, source, output in (("apply in place", Path(tmp) / "copy", ""),
                                      ("apply into a new folder", run, f"{tmp}/new")):
            r = child(source, output, Path(tmp) / "result.json")
            print(f"  {label + ':':32s} {r['seconds']:6.2f} s, {r['withdrawn']:.0f} withdrawn "
                  f"from {r['rewritten']:.0f} shard(s), {r['removed'] / 1e6:.1f} MB removed, "
                  f"peak RSS {r['rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
