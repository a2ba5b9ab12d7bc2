"""consentfetch vs img2dataset on the same corpus, server, options and machine.

    python benchmarks/compare_img2dataset.py                 # 3 rounds, A B A B ...
    python benchmarks/compare_img2dataset.py --rounds 5 --processes 2

img2dataset (pinned) is installed into its own virtual environment under
``benchmarks/.cache`` on the first run. Both tools read the same parquet from
the same local multi-origin site (32 origins on 127.0.0.x, each with a
robots.txt, a few with opt-outs). Both write webdataset at 256 px, border
mode, jpg q95, with the same process count and requests in flight. Runs
alternate, so machine noise hits both tools alike. Each round prints
images/s, CPU seconds per image and peak RSS for each tool, and the ratio
consentfetch/img2dataset; the medians over rounds come last.

A third variant, consentfetch with every consent check turned off
(``--ignore`` all), measures what honouring opt-outs costs.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    CACHE,
    CORPUS_HOSTS,
    RunStats,
    SiteProcess,
    corpus_urls,
    measure,
    setup_corpus_site,
)
from corpus import build_corpus  # noqa: E402

from consentfetch.config import CHECKS  # noqa: E402

IMG2DATASET_VERSION = "1.47.0"


@dataclass
class Result:
    tool: str
    round: int
    images: int
    stats: RunStats

    @property
    def images_per_s(self) -> float:
        return self.images / self.stats.wall

    @property
    def cpu_per_image_ms(self) -> float:
        return 1000 * self.stats.cpu / max(1, self.images)


def img2dataset_venv(version: str) -> Path:
    """A virtual environment with img2dataset ``version``, made once and cached."""
    venv = CACHE / f"img2dataset-{version}"
    marker = venv / "installed.ok"
    if not marker.exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet",
                        f"img2dataset=={version}"], check=True)
        marker.write_text(version)
    return venv


def consentfetch_cmd(urls: Path, out: Path, args: argparse.Namespace, shard_size: int,
                     checks_off: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "consentfetch", "download", str(urls), str(out),
           "--caption-col", "caption", "--image-size", "256", "--resize-mode", "border",
           "--encode-format", "jpg", "--encode-quality", "95",
           "--processes", str(args.processes), "--concurrency", str(args.concurrency),
           "--shard-size", str(shard_size), "--timeout", "10", "--retries", "0",
           "--allow-private-networks", "--overwrite", "--consent", "strict"]
    if checks_off:
        for check in CHECKS:
            cmd += ["--ignore", check]
    return cmd


def img2dataset_cmd(venv: Path, urls: Path, out: Path, args: argparse.Namespace,
                    shard_size: int) -> list[str]:
    return [str(venv / "bin" / "img2dataset"), "--url_list", str(urls),
            "--input_format", "parquet", "--url_col", "url", "--caption_col", "caption",
            "--output_format", "webdataset", "--output_folder", str(out),
            "--image_size", "256", "--resize_mode", "border", "--encode_format", "jpg",
            "--encode_quality", "95", "--processes_count", str(args.processes),
            "--thread_count", str(args.concurrency),
            "--number_sample_per_shard", str(shard_size), "--timeout", "10",
            "--retries", "0", "--enable_wandb", "False"]
    # Not --incremental_mode overwrite: img2dataset 1.47 creates <out>/_tmp, writes its
    # shard inputs there, then "overwrite" deletes <out> with _tmp in it, even for a
    # new folder, and the run fails. run_round removes each output folder first.


def successes(out: Path) -> int:
    """Successful samples, from the per-shard stats both tools write."""
    return sum(json.loads(p.read_text())["successes"] for p in out.glob("*_stats.json"))


def run_round(n: int, tools: dict[str, list[str]], out_dirs: dict[str, Path]) -> list[Result]:
    results = []
    for tool, cmd in tools.items():
        shutil.rmtree(out_dirs[tool], ignore_errors=True)
        stats = measure(cmd)
        if stats.returncode != 0:
            sys.exit(f"{tool} failed:\n{stats.stderr[-3000:]}")
        results.append(Result(tool, n, successes(out_dirs[tool]), stats))
        r = results[-1]
        print(f"  round {n} {tool:<24} {r.images:5d} images {r.stats.wall:6.1f} s "
              f"{r.images_per_s:7.1f} images/s {r.cpu_per_image_ms:6.2f} ms CPU/image "
              f"peak RSS {r.stats.max_rss_mib:6.1f} MiB (sum over processes "
              f"{r.stats.total_rss_mib:6.1f})", flush=True)
    return results


def summarise(results: list[Result]) -> None:
    by_tool: dict[str, list[Result]] = {}
    for r in results:
        by_tool.setdefault(r.tool, []).append(r)
    print("\nmedians over rounds:")
    for tool, rs in by_tool.items():
        print(f"  {tool:<24} {statistics.median(r.images_per_s for r in rs):7.1f} images/s "
              f"{statistics.median(r.cpu_per_image_ms for r in rs):6.2f} ms CPU/image "
              f"peak RSS {statistics.median(r.stats.max_rss_mib for r in rs):6.1f} MiB "
              f"(sum {statistics.median(r.stats.total_rss_mib for r in rs):6.1f})")
    if "consentfetch-checks-off" in by_tool:
        strict = {r.round: r.images_per_s for r in by_tool["consentfetch"]}
        overhead = [1 - strict[r.round] / r.images_per_s
                    for r in by_tool["consentfetch-checks-off"]]
        print(f"\nconsent overhead (strict vs all checks off): "
              f"{100 * statistics.median(overhead):.1f}% of images/s, per round "
              f"{[round(100 * x, 1) for x in overhead]}")
    if "img2dataset" not in by_tool:
        return
    rounds = sorted({r.round for r in results})

    def ratio(tool: str, metric) -> list[float]:
        base = {r.round: r for r in by_tool["img2dataset"]}
        return [metric(r) / metric(base[r.round]) for r in by_tool[tool] if r.round in base]

    print("\nconsentfetch / img2dataset, per round and median:")
    for tool in by_tool:
        if tool == "img2dataset":
            continue
        speed = ratio(tool, lambda r: r.images_per_s)
        cpu = ratio(tool, lambda r: r.cpu_per_image_ms)
        rss = ratio(tool, lambda r: r.stats.total_rss_mib)
        print(f"  {tool:<24} images/s x{statistics.median(speed):.2f} "
              f"{[round(x, 2) for x in speed]}; CPU/image x{statistics.median(cpu):.2f}; "
              f"peak RSS (sum) x{statistics.median(rss):.2f} over {len(rounds)} rounds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--n", type=int, default=2000, help="corpus images")
    parser.add_argument("--repeat", type=int, default=2, help="URLs per corpus image")
    parser.add_argument("--no-img2dataset", action="store_true",
                        help="run consentfetch only (no img2dataset install)")
    parser.add_argument("--no-checks-off", action="store_true",
                        help="skip the consent-overhead variant")
    args = parser.parse_args()

    files = build_corpus(n=args.n)
    venv = None if args.no_img2dataset else img2dataset_venv(IMG2DATASET_VERSION)
    setup = functools.partial(setup_corpus_site, [str(p) for p in files])
    with SiteProcess(CORPUS_HOSTS, setup) as port, tempfile.TemporaryDirectory() as tmp:
        urls = corpus_urls(files, port, repeat=args.repeat)
        url_list = Path(tmp) / "urls.parquet"
        pq.write_table(pa.table({"url": urls,
                                 "caption": [f"image {i}" for i in range(len(urls))]}), url_list)
        shard_size = math.ceil(len(urls) / (2 * args.processes))  # every process gets work
        out = {t: Path(tmp) / t for t in ("consentfetch", "img2dataset",
                                          "consentfetch-checks-off")}
        tools = {"consentfetch": consentfetch_cmd(url_list, out["consentfetch"], args,
                                                  shard_size)}
        if venv is not None:
            tools["img2dataset"] = img2dataset_cmd(venv, url_list, out["img2dataset"], args,
                                                   shard_size)
        if not args.no_checks_off:
            tools["consentfetch-checks-off"] = consentfetch_cmd(
                url_list, out["consentfetch-checks-off"], args, shard_size, checks_off=True)
        print(f"{len(urls)} URLs over {len(CORPUS_HOSTS)} origins, {args.processes} processes, "
              f"{args.concurrency} in flight, shards of {shard_size}")
        results = []
        for n in range(1, args.rounds + 1):
            # alternate the order each round: A B, then B A, ...
            ordered = dict(reversed(list(tools.items()))) if n % 2 == 0 else tools
            results += run_round(n, ordered, out)
    summarise(results)


if __name__ == "__main__":
    main()
