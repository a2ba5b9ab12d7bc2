"""Shared benchmark plumbing: a local site in its own process, and RSS sampling.

Benchmarks only ever talk to 127.0.0.x. The site runs in a separate process,
so it does not share the benchmarked process's interpreter.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from consentfetch.testsite import LocalSite

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"


def _serve(hosts: Sequence[str], setup: Callable[[LocalSite], None],
           ready: multiprocessing.Queue[int], stop: multiprocessing.synchronize.Event) -> None:
    site = LocalSite(hosts).start()
    setup(site)
    ready.put(site.port)
    stop.wait()
    site.stop()


class SiteProcess:
    """``with SiteProcess(hosts, setup) as port:`` — a LocalSite in a child process."""

    def __init__(self, hosts: Sequence[str], setup: Callable[[LocalSite], None]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._ready: multiprocessing.Queue[int] = ctx.Queue()
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=_serve, args=(tuple(hosts), setup, self._ready,
                                                      self._stop), daemon=True)

    def __enter__(self) -> int:
        self._proc.start()
        return self._ready.get(timeout=60)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                found.add(child)
                frontier.append(child)
    return found


def _peak_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _open_files(pid: int) -> int | None:
    """Open file descriptors of ``pid`` (sockets included): what ``ulimit -n`` bounds."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


@dataclass
class RunStats:
    wall: float = 0.0
    cpu: float = 0.0  # user + system seconds of the whole process tree
    peak_rss_mib: dict[int, float] = field(default_factory=dict)  # pid -> peak RSS
    peak_files: dict[int, int] = field(default_factory=dict)  # pid -> most open files seen
    returncode: int = 0
    stderr: str = ""

    @property
    def max_rss_mib(self) -> float:
        return max(self.peak_rss_mib.values(), default=0.0)

    @property
    def max_files(self) -> int:
        """The most open files one process held (sampled)."""
        return max(self.peak_files.values(), default=0)

    @property
    def total_rss_mib(self) -> float:
        """Peaks summed over processes: an upper bound of the run's footprint."""
        return sum(self.peak_rss_mib.values())


def measure(cmd: Sequence[str], *, env: dict[str, str] | None = None,
            interval: float = 0.2, preexec_fn: Callable[[], None] | None = None) -> RunStats:
    """Run ``cmd``; sample every process of its tree for its peak RSS (VmHWM) and open files."""
    stats = RunStats()
    before = os.times()
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=preexec_fn)
    stderr_chunks: list[str] = []
    reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()),
                              daemon=True)
    reader.start()
    while proc.poll() is None:
        for pid in _descendants(proc.pid):
            peak = _peak_kib(pid)
            if peak is not None:
                stats.peak_rss_mib[pid] = max(stats.peak_rss_mib.get(pid, 0), peak / 1024)
            files = _open_files(pid)
            if files is not None:
                stats.peak_files[pid] = max(stats.peak_files.get(pid, 0), files)
        time.sleep(interval)
    reader.join(5)
    after = os.times()
    stats.wall = time.monotonic() - start
    stats.cpu = (after.children_user - before.children_user) + \
        (after.children_system - before.children_system)
    stats.returncode = proc.returncode
    stats.stderr = "".join(stderr_chunks)
    return stats


# -- a corpus site: many origins, each with a robots.txt, a few with opt-outs --------

CORPUS_HOSTS = tuple(f"127.0.0.{i}" for i in range(120, 152))  # 32 origins
OPTED_OUT_HOSTS = 4  # the first few origins close /private/ in robots.txt
NOAI_EVERY = 50  # every 50th image carries X-Robots-Tag: noai


def corpus_url_path(index: int, path: Path) -> str:
    folder = "private" if index % 40 == 7 else "img"
    return f"/{folder}/{index}{path.suffix}"


def setup_corpus_site(files: Sequence[str], site: LocalSite) -> None:
    """Serve ``files`` spread over the site's hosts (run in the site's process)."""
    from consentfetch.testsite import Resource
    for h in range(len(site.hosts)):
        robots = "User-agent: *\nDisallow: /private/\n" if h < OPTED_OUT_HOSTS \
            else "User-agent: *\nAllow: /\n"
        site.put(h, "/robots.txt", robots)
    for index, name in enumerate(files):
        path = Path(name)
        headers = {"X-Robots-Tag": "noai"} if index % NOAI_EVERY == 3 else {}
        site.put(index % len(site.hosts), corpus_url_path(index, path),
                 Resource(path.read_bytes(), headers=headers))


def corpus_urls(files: Sequence[Path], port: int, hosts: Sequence[str] = CORPUS_HOSTS,
                repeat: int = 1) -> list[str]:
    """The URL of every corpus file on the corpus site (``repeat`` times, in the same order)."""
    urls = [f"http://{hosts[i % len(hosts)]}:{port}{corpus_url_path(i, p)}"
            for i, p in enumerate(files)]
    return urls * repeat
