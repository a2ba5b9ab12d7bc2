"""A run over a hostile site: every fault of issue 11 on its own origin, in one run.

    python benchmarks/hostile.py                 # the figures in benchmarks/README.md
    python benchmarks/hostile.py --rounds 1 --quick   # CI's smoke size

One local site plays one origin per fault (127.0.0.x, in a process of its
own): files that arrive in pieces, cut lines and damaged bodies, non-UTF-8
status lines and headers, unparseable redirects, absurd Crawl-delays, a
robots.txt built to be slow to match, image bombs, credentials in URLs, and
input rows no URL parser likes. Beside them, ordinary origins serve ordinary
images. A real ``consentfetch download`` subprocess downloads the lot, and
the script checks the run's promises, exiting non-zero if one breaks:

* the run completes (exit 0, run.json ``complete``) within a bounded time;
* every input row has exactly one audit row;
* no opted-out bytes are on disk: no URL that a site's own files refuse is
  among the samples, and every such URL is ``disallowed`` or failed;
* the peak RSS of every process stays within ``--budget-mib`` (by default a
  base of 320 MiB plus the decoded-image budget, ``--max-decoded-mib``).

It prints the wall time and the peak RSS of each round and their medians.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SiteProcess, measure  # noqa: E402
from image_memory import ico_bomb, rgba_png  # noqa: E402

from consentfetch.testsite import RUDE, Delivery, LocalSite, RawResource, Resource, make_image  # noqa: E402

ALLOW = "User-agent: *\nAllow: /\n"
FILLER = "".join(f"# comment line {i:05d}, padding the file as real ones are padded\n"
                 for i in range(700))
IMAGE = make_image(64, 48)


@dataclass
class Fault:
    """What one origin serves, and the input rows that point at it."""

    name: str
    files: dict[str, Resource | RawResource | str] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)  # "path" or "url", + fields
    refused: set[str] = field(default_factory=set)  # paths the site's own files refuse


def _raw(status_line: bytes, headers: list[bytes], body: bytes = b"") -> RawResource:
    head = [status_line, *headers, b"Content-Length: %d" % len(body), b"Connection: close"]
    return RawResource(b"\r\n".join(head) + b"\r\n\r\n" + body)


def _image_raw(*headers: bytes) -> RawResource:
    return _raw(b"HTTP/1.1 200 OK", [b"Content-Type: image/jpeg", *headers], IMAGE)


def _redirect(location: bytes) -> RawResource:
    return _raw(b"HTTP/1.1 302 Found", [b"Location: " + location])


def _hostile_robots() -> str:
    """About 500 KiB of rules built to be slow to match: long patterns full of ``*``."""
    rule = "Disallow: /" + "a*" * 60 + "b$\n"
    return "User-agent: *\n" + rule * (500_000 // len(rule)) + "Disallow: /private/\n"


def faults(heavy: bool) -> list[Fault]:
    """The catalogue: one fault per origin. ``heavy`` adds the costly ones (bombs)."""
    out: list[Fault] = []

    def add(name: str, files: dict, rows: list[dict], refused: set[str] = frozenset()) -> None:
        out.append(Fault(name, dict(files), rows, set(refused)))

    img = {"/a.jpg": Resource(IMAGE), "/private/a.jpg": Resource(IMAGE)}
    both = [{"path": "/a.jpg"}, {"path": "/private/a.jpg"}]
    # -- origin files that arrive in pieces, cut, damaged
    add("robots in pieces", {**img, "/robots.txt": Resource(
        ("User-agent: *\n" + FILLER + "Disallow: /private/\n").encode(), delivery=RUDE)},
        both, {"/private/a.jpg"})
    some_lines = FILLER[:FILLER.index("\n", 8000) + 1]
    add("robots dripped", {**img, "/robots.txt": Resource(
        ("User-agent: *\n" + some_lines + "Disallow: /private/\n").encode(),
        delivery=Delivery(piece=256, pause=0.002))}, both, {"/private/a.jpg"})
    cut_line = "User-agent: *\nDisallow: /private/\n"
    pad = 512_000 - len(cut_line) - len("Disallow: /")
    add("robots over 500 KiB, cut mid-line", {**img, "/robots.txt":
        cut_line + "#" * (pad - 1) + "\nDisallow: /private/\n"}, both, {"/private/a.jpg"})
    add("robots with half a BOM", {**img, "/robots.txt": Resource(
        b"\xef\xbbUser-agent: *\nDisallow: /\n")}, both, {"/a.jpg", "/private/a.jpg"})
    add("robots cut by a reset", {**img, "/robots.txt": Resource(
        ("User-agent: *\n" + FILLER + "Disallow: /private/\n").encode(), cut=3000)},
        both, {"/a.jpg", "/private/a.jpg"})
    add("ai.txt cut by a reset", {**img, "/robots.txt": ALLOW, "/ai.txt": Resource(
        ("User-agent: *\n" + FILLER + "Disallow: /\n").encode(), cut=3000)},
        both, {"/a.jpg", "/private/a.jpg"})
    add("tdmrep.json cut by a reset", {**img, "/robots.txt": ALLOW,
        "/.well-known/tdmrep.json": Resource(json.dumps(
            [{"location": "/*", "tdm-reservation": 1}] * 50).encode(), cut=200)},
        both, {"/a.jpg", "/private/a.jpg"})
    add("tdmrep.json with a lone surrogate", {**img, "/robots.txt": ALLOW,
        "/.well-known/tdmrep.json": Resource(
            b'[{"location": "/private/*", "tdm-reservation": 1, "tdm-policy": "\\ud800"}]')},
        both, {"/private/a.jpg"})
    add("robots redirect to an unparseable Location", {**img, "/robots.txt":
        _redirect(b"http://[::1")}, both, {"/a.jpg", "/private/a.jpg"})
    add("a hostile robots.txt (slow patterns)", {**img, "/robots.txt": _hostile_robots()},
        both, {"/private/a.jpg"})
    add("Crawl-delay: 100000000", {**img, "/robots.txt":
        "User-agent: *\nCrawl-delay: 100000000\nDisallow: /private/\n"},
        [{"path": f"/a.jpg?{i}"} for i in range(3)] + [{"path": "/private/a.jpg"}],
        {"/private/a.jpg"})
    add("Crawl-delay: 1e400", {**img, "/robots.txt":
        "User-agent: *\nCrawl-delay: 1" + "0" * 400 + "\nDisallow: /private/\n"},
        [{"path": f"/a.jpg?{i}"} for i in range(3)] + [{"path": "/private/a.jpg"}],
        {"/private/a.jpg"})
    # -- responses
    add("Latin-1 reason phrase", {"/robots.txt": ALLOW, "/a.jpg":
        _raw(b"HTTP/1.1 404 Nicht gef\xfcnden", [])}, [{"path": "/a.jpg"}])
    add("non-UTF-8 X-Robots-Tag", {"/robots.txt": ALLOW, "/a.jpg":
        _image_raw(b"X-Robots-Tag: noai \xff\xfe")}, [{"path": "/a.jpg"}], {"/a.jpg"})
    add("non-UTF-8 Retry-After", {"/robots.txt": ALLOW, "/a.jpg":
        _raw(b"HTTP/1.1 503 Service Unavailable", [b"Retry-After: 1\xe9"])},
        [{"path": "/a.jpg"}])
    add("non-UTF-8 tdm-policy", {"/robots.txt": ALLOW, "/a.jpg": _image_raw(
        b"tdm-reservation: 1", b"tdm-policy: https://example.org/p\xe9licy.json")},
        [{"path": "/a.jpg"}], {"/a.jpg"})
    add("image redirects to unparseable Locations", {"/robots.txt": ALLOW,
        "/r1.jpg": _redirect(b"http://[::1"), "/r2.jpg": _redirect(b"http://xn--/x.png"),
        "/r3.jpg": _redirect(b"http://127.0.0.1:99999999/x.png")},
        [{"path": "/r1.jpg"}, {"path": "/r2.jpg"}, {"path": "/r3.jpg"}])
    add("a body that drips", {"/robots.txt": ALLOW, "/a.jpg": Resource(
        IMAGE, delivery=Delivery(piece=1, pause=0.5))}, [{"path": "/a.jpg"}])
    add("credentials in the URL", {"/robots.txt": "User-agent: *\nDisallow: /private/\n",
        **img}, [{"path": "/a.jpg", "userinfo": "user:hunter2"},
                 {"path": "/private/a.jpg", "userinfo": "user:hunter2"}],
        {"/private/a.jpg"})
    # -- input rows no URL parser likes (they never reach a site)
    add("input rows", {"/robots.txt": ALLOW, "/a.jpg": Resource(IMAGE)}, [
        {"url": "http://xn--/x.png"}, {"url": "http://" + "a" * 64 + ".example/x.png"},
        {"url": "http://127.0.0.1/\ud800.png"}, {"path": "/a.jpg", "caption": "cap \udcff"},
        {"path": "/a.jpg", "kept": "kept \ud834"}, {"url": "ftp://example.com/x.png"},
        {"url": ""}, {"url": "http://[::1/x.png"}])
    if heavy:
        add("10000x10000 RGBA PNG", {"/robots.txt": ALLOW, "/bomb.png": Resource(
            rgba_png(10_000), content_type="image/png")}, [{"path": "/bomb.png"}] * 2)
        add("ICO bomb", {"/robots.txt": ALLOW, "/bomb.ico": Resource(
            ico_bomb(12_000), content_type="image/x-icon")}, [{"path": "/bomb.ico"}])
        for i in range(40):  # 40 origins, each with a 500 KiB robots.txt to parse and keep
            add(f"big robots.txt {i}", {"/robots.txt": _hostile_robots(), **img},
                [{"path": "/a.jpg"}], set())
    return out


ORDINARY = 8  # ordinary origins beside the faults, 10 images each
# A process's memory besides decoded images: interpreter, libraries, the
# bounded origin-policy cache (64 MiB), buffers of the requests in flight.
BASE_BUDGET_MIB = 320
FIRST_HOST = 10


def hosts(heavy: bool) -> tuple[str, ...]:
    count = len(faults(heavy)) + ORDINARY
    return tuple(f"127.0.{(FIRST_HOST + i) // 250}.{(FIRST_HOST + i) % 250 + 2}"
                 for i in range(count))


def setup_site(heavy: bool, site: LocalSite) -> None:
    """Put every fault on its own origin (runs in the site's process)."""
    catalogue = faults(heavy)
    for index, fault in enumerate(catalogue):
        for path, resource in fault.files.items():
            site.put(index, path, resource)
    for index in range(len(catalogue), len(site.hosts)):
        site.put(index, "/robots.txt", ALLOW)
        for i in range(10):
            site.put(index, f"/img/{i}.jpg", make_image(80, 60, seed=i))


def input_rows(heavy: bool, port: int) -> tuple[list[dict[str, Any]], set[str]]:
    """The URL list, and the URLs whose bytes must never reach the shards."""
    names = hosts(heavy)
    rows: list[dict[str, Any]] = []
    refused: set[str] = set()
    for index, fault in enumerate(faults(heavy)):
        for spec in fault.rows:
            row = {"url": spec.get("url"), "caption": spec.get("caption", fault.name),
                   "kept": spec.get("kept", "")}
            if "path" in spec:
                auth = spec["userinfo"] + "@" if "userinfo" in spec else ""
                row["url"] = f"http://{auth}{names[index]}:{port}{spec['path']}"
                if spec["path"].split("?")[0] in fault.refused:
                    refused.add(row["url"])
            rows.append(row)
    for index in range(len(faults(heavy)), len(names)):
        rows += [{"url": f"http://{names[index]}:{port}/img/{i}.jpg", "caption": "ordinary",
                  "kept": ""} for i in range(10)]
    return rows, refused


def check_promises(out: Path, rows: list[dict[str, Any]], refused: set[str]) -> list[str]:
    """What the run broke of its promises ([] when it kept them all)."""
    broken = []
    run = json.loads((out / "run.json").read_text())
    if run.get("state") != "complete":
        broken.append(f"run.json state is {run.get('state')!r}")
    audit = [row for part in sorted(out.glob("*.parquet")) if part.name != "origins.parquet"
             for row in pq.read_table(part).to_pylist()]
    if len(audit) != len(rows) or len({r["key"] for r in audit}) != len(rows):
        broken.append(f"{len(audit)} audit rows for {len(rows)} input rows")
    for row in audit:
        if row["url"] in refused and row["status"] == "success":
            broken.append(f"opted-out URL stored: {row['url']}")
    secret = b"hunter2"
    for path in out.iterdir():
        if path.is_file() and secret in path.read_bytes():
            broken.append(f"the URL's password is stored in {path.name}")
    return broken


def write_input(path: Path, rows: list[dict[str, Any]]) -> None:
    # JSON Lines with surrogate escapes: the only format that carries any string
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="no bombs, no 40 big robots.txt")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--max-decoded-mib", type=int, default=1024,
                        help="consentfetch's --max-decoded-bytes, in MiB (its default: 1024)")
    parser.add_argument("--budget-mib", type=float,
                        help="the peak RSS no process may exceed (default: "
                             f"{BASE_BUDGET_MIB} MiB + --max-decoded-mib)")
    args = parser.parse_args()
    budget = args.budget_mib or BASE_BUDGET_MIB + args.max_decoded_mib
    heavy = not args.quick
    catalogue = faults(heavy)
    print(f"{len(catalogue)} faults on their own origins, {ORDINARY} ordinary origins")
    walls, peaks, failures = [], [], []
    with SiteProcess(hosts(heavy), _setup_for(heavy)) as port:
        rows, refused = input_rows(heavy, port)
        work = Path(tempfile.mkdtemp(prefix="consentfetch-hostile-"))
        try:
            write_input(work / "urls.jsonl", rows)
            for round_no in range(1, args.rounds + 1):
                out = work / f"out{round_no}"
                stats = measure([sys.executable, "-m", "consentfetch", "download",
                                 str(work / "urls.jsonl"), str(out), "--caption-col",
                                 "caption", "--save-additional-columns", "kept",
                                 "--allow-private-networks", "--timeout", "5",
                                 "--processes", str(args.processes), "--shard-size", "100",
                                 "--max-decoded-bytes", str(args.max_decoded_mib * 2**20)])
                broken = check_promises(out, rows, refused) if stats.returncode == 0 \
                    else [f"exit {stats.returncode}: {stats.stderr[-2000:]}"]
                if stats.max_rss_mib > budget:
                    broken.append(f"peak RSS {stats.max_rss_mib:.0f} MiB > budget "
                                  f"{budget:.0f} MiB")
                walls.append(stats.wall)
                peaks.append(stats.max_rss_mib)
                failures += broken
                print(f"round {round_no}: {len(rows)} rows in {stats.wall:.1f} s, peak RSS "
                      f"{stats.max_rss_mib:.0f} MiB (largest process), "
                      f"{stats.total_rss_mib:.0f} MiB summed; "
                      + ("promises kept" if not broken else "BROKEN: " + "; ".join(broken)))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"median of {len(walls)}: {statistics.median(walls):.1f} s "
          f"(spread {min(walls):.1f}–{max(walls):.1f}), peak RSS "
          f"{statistics.median(peaks):.0f} MiB (spread {min(peaks):.0f}–{max(peaks):.0f})")
    if failures:
        sys.exit(1)


def _setup_for(heavy: bool) -> Callable[[LocalSite], None]:
    return _HeavySetup() if heavy else _QuickSetup()


class _HeavySetup:
    def __call__(self, site: LocalSite) -> None:
        setup_site(True, site)


class _QuickSetup:
    def __call__(self, site: LocalSite) -> None:
        setup_site(False, site)


if __name__ == "__main__":
    main()
