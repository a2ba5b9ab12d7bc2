"""Progress: the library counts and hands snapshots to a view; only the CLI draws."""

from __future__ import annotations

import io
import logging
import queue
import re
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from consentfetch import fetch_shards
from consentfetch.cli.progress import TerminalBar, progress_view
from consentfetch.distribute.local import _drain, _QueueSink
from consentfetch.layout import stats_name
from consentfetch.progress import HostWait, LogLines, Progress, ProgressSnapshot
from consentfetch.testsite import LocalSite, make_image

from .conftest import LOCAL


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Recorder:
    """A view that keeps what it was shown."""

    interval = 0.0

    def __init__(self) -> None:
        self.shown: list[ProgressSnapshot] = []
        self.closed = 0

    def show(self, snapshot: ProgressSnapshot) -> None:
        self.shown.append(snapshot)

    def close(self) -> None:
        self.closed += 1


def test_snapshot_line() -> None:
    assert ProgressSnapshot(3, 2, 4, 2.0).line() == \
        "3/4 rows (75%), 2 images (66.7% success), 1.0 images/s, ETA 1 s"
    assert ProgressSnapshot(100, 50, 10_000, 60.0).line().endswith("ETA 1 h 39 min")
    assert ProgressSnapshot(4, 4, 4, 2.0).line().endswith("images/s")  # done: no ETA
    assert ProgressSnapshot(3, 0, None, 1.0).line() == \
        "3 rows, 0 images (0.0% success), 0.0 images/s"
    assert ProgressSnapshot(0, 0, 0, 0.0).line() == "0 rows, 0 images (- success), 0.0 images/s"


def test_terminal_bar_redraws_one_line_and_ends_it() -> None:
    screen = FakeTerminal()
    progress = Progress(4, TerminalBar(screen))
    progress.update(2, 1)  # the first update draws
    progress.update(2, 1)  # within TTY_REFRESH of it: not drawn yet
    progress.close()  # drawn once more, as the counts moved, then the line ends
    frames = screen.getvalue().split("\r")[1:]
    assert len(frames) == 2
    assert re.fullmatch(r"\[#{12}\.{12}\] 2/4 rows \(50%\), 1 images \(50\.0% success\), "
                        r"[0-9.]+ images/s, ETA \d+ s", frames[0])
    assert frames[1].startswith(f"[{'#' * 24}] 4/4 rows (100%), 2 images") and \
        frames[1].endswith("\n") and frames[1][:-1].rstrip(" ").endswith("images/s")
    # the last line is shorter (no ETA): padded, so nothing of the longer one stays on screen
    assert len(frames[1]) - 1 >= len(frames[0])


def test_terminal_bar_without_a_total() -> None:
    screen = FakeTerminal()
    progress = Progress(None, TerminalBar(screen))
    progress.update(1, 1)
    progress.close()
    assert screen.getvalue().startswith("\r1 rows, 1 images (100.0% success)")
    assert screen.getvalue().endswith("\n") and "[" not in screen.getvalue()


def test_the_cli_draws_on_a_terminal_and_logs_otherwise() -> None:
    assert isinstance(progress_view(FakeTerminal()), TerminalBar)
    assert isinstance(progress_view(io.StringIO()), LogLines)


def test_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    progress = Progress(2, LogLines())
    with caplog.at_level(logging.INFO, logger="consentfetch.progress"):
        progress.update(2, 2)
        progress.close()
    assert [r.getMessage()[:31] for r in caplog.records] == ["progress: 2/2 rows (100%), 2 im"]


def test_fetch_shards_hands_progress_to_a_view(site: LocalSite, url_list,
                                               tmp_path: Path) -> None:
    rows = [{"url": site.put(0, f"/{i}.jpg", make_image(40, 40, seed=i))} for i in range(3)]
    view = Recorder()
    fetch_shards(url_list(rows), str(tmp_path / "o"), progress=view, **LOCAL)
    assert view.closed == 1
    last = view.shown[-1]
    assert (last.done, last.successes, last.total) == (3, 3, 3)


def test_the_library_never_draws_on_the_terminal(site: LocalSite, url_list, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``progress=True`` logs, even when stderr is a terminal: drawing is the CLI's."""
    screen = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", screen)
    rows = [{"url": site.put(0, f"/{i}.jpg", make_image(40, 40, seed=i))} for i in range(2)]
    fetch_shards(url_list(rows), str(tmp_path / "o"), progress=True, **LOCAL)
    assert screen.getvalue() == ""


def test_durations() -> None:
    from consentfetch.progress import duration
    assert [duration(s) for s in (0, 42.4, 65, 3599, 3600, 7620)] == [
        "0 s", "42 s", "1 min 05 s", "59 min 59 s", "1 h 00 min", "2 h 07 min"]


def _all_within_total(view: Recorder) -> bool:
    return all(s.total is not None and s.done <= s.total for s in view.shown)


def test_a_resumed_run_counts_only_the_rows_it_does(site: LocalSite, url_list,
                                                    tmp_path: Path) -> None:
    """Rows of shards complete before the run are shown apart, not as rows done
    (they would make the rate and the ETA lie)."""
    rows = [{"url": site.put(0, f"/{i}.jpg", make_image(40, 40, seed=i))} for i in range(7)]
    path, out = url_list(rows), tmp_path / "o"
    fetch_shards(path, str(out), shard_size=3, **LOCAL)
    (out / stats_name(2)).unlink()  # shard 2 (1 row) is now unfinished: it is redone
    view = Recorder()
    fetch_shards(path, str(out), shard_size=3, progress=view, **LOCAL)
    last = view.shown[-1]
    assert (last.done, last.successes, last.total, last.resumed) == (1, 1, 1, 6)
    assert _all_within_total(view)
    assert last.line().startswith("1/1 rows (100%) + 6 already done, 1 images")


def test_retry_failed_counts_the_rows_it_retries(site: LocalSite, url_list,
                                                 tmp_path: Path) -> None:
    """--retry-failed's total is the failures it retries, so done never passes it."""
    rows = [{"url": site.put(0, f"/ok/{i}.jpg", make_image(40, 40, seed=i))} for i in range(4)]
    rows += [{"url": site.url(0, f"/fault/flaky?id={i}&fail=1&code=503")} for i in range(3)]
    rows += [{"url": site.url(0, "/missing.jpg")}]  # a 404: not retried
    path, out = url_list(rows), tmp_path / "o"
    options: dict[str, Any] = {**LOCAL, "retries": 0, "shard_size": 5}
    fetch_shards(path, str(out), **options)
    view = Recorder()
    fetch_shards(path, str(out), retry_failed=True, progress=view, **options)
    last = view.shown[-1]
    assert (last.done, last.successes, last.total, last.resumed) == (3, 3, 3, 5)
    assert _all_within_total(view)


@pytest.mark.parametrize(("name", "text"), [
    ("urls.csv", "url,caption\n{0},a\n\n{1},\"b, c\"\n{2},d"),
    ("urls.tsv", "url\tcaption\n{0}\ta\n{1}\tb\n{2}\tc\n\n"),
    ("urls.jsonl", '{{"url": "{0}"}}\n  \n{{"url": "{1}"}}\n{{"url": "{2}"}}\n'),
    ("urls.txt", "{0}\n{1}\r\n\n{2}\n"),
])
def test_text_inputs_have_a_total(site: LocalSite, tmp_path: Path, name: str,
                                  text: str) -> None:
    urls = [site.put(0, f"/{i}.jpg", make_image(40, 40, seed=i)) for i in range(3)]
    path = tmp_path / name
    path.write_text(text.format(*urls), encoding="utf-8")
    view = Recorder()
    fetch_shards(str(path), str(tmp_path / "o"), progress=view, **LOCAL)
    last = view.shown[-1]
    assert (last.done, last.total, last.estimate) == (3, 3, False)
    assert last.eta is None and "3/3 rows (100%)" in last.line()


def test_an_estimated_total_is_shown_as_one_and_never_passed() -> None:
    assert ProgressSnapshot(1, 1, 4, 1.0, estimate=True).line() == \
        "1/~4 rows (~25%), 1 images (100.0% success), 1.0 images/s, ETA ~3 s"
    view = Recorder()
    progress = Progress(2, view, estimate=True)
    progress.update(3, 0)  # the estimate was low: it becomes the count
    assert (view.shown[-1].done, view.shown[-1].total) == (3, 3)
    exact = Progress(2, Recorder())
    exact.update(1, 0)
    assert exact.snapshot().total == 2


def test_snapshot_line_names_hosts_backing_off() -> None:
    """Issue 15: a run held by a backed-off host says so, instead of sitting still."""
    assert ProgressSnapshot(21, 20, 23, 10.0, backing_off=2, next_try=31.2).line() == \
        "21/23 rows (91%), 20 images (95.2% success), 2.0 images/s, ETA 1 s, " \
        "2 hosts backing off, next try in 31 s"
    assert ProgressSnapshot(3, 0, None, 1.0, backing_off=1).line().endswith(", 1 host backing off")
    assert "backing off" not in ProgressSnapshot(3, 0, None, 1.0, backing_off=0, next_try=5.0).line()


def test_progress_adds_up_the_hosts_each_shard_waits_for() -> None:
    view = Recorder()
    progress = Progress(10, view)
    progress.update(1, 1, HostWait(0, 2, 30.0))
    progress.update(0, 0, HostWait(1, 1, 5.0))
    assert (view.shown[-1].backing_off, round(view.shown[-1].next_try or 0)) == (3, 5)
    progress.update(0, 0, HostWait(1, 0, None))  # shard 1 waits for none now (or ended)
    assert (view.shown[-1].backing_off, round(view.shown[-1].next_try or 0)) == (2, 30)
    progress.update(0, 0, HostWait(0, 1, 3.0))  # shard 0's latest replaces its earlier
    assert (view.shown[-1].backing_off, round(view.shown[-1].next_try or 0)) == (1, 3)
    progress.update(0, 0, HostWait(0, 0, None))
    assert view.shown[-1].backing_off == 0 and view.shown[-1].next_try is None


def test_worker_processes_send_their_host_waits() -> None:
    """With --processes > 1 the waits travel with the counts, through the queue."""
    updates: queue.Queue[object] = queue.Queue()
    sink = _QueueSink(updates)
    sink(0, 0, waiting=HostWait(3, 2, 9.0))
    sink(1, 1)
    sink.flush()
    view = Recorder()
    progress = Progress(5, view)
    stop = threading.Event()
    stop.set()  # drain what is queued, then return
    _drain(updates, progress, stop)
    assert (progress.done, progress.successes) == (1, 1)
    assert view.shown[-1].backing_off == 2
