"""Progress of a run: rows done and images saved, counted and handed to a view.

The library counts and never draws: :class:`Progress` passes a
:class:`ProgressSnapshot` to a :class:`ProgressView` at most every
``view.interval`` seconds. :class:`LogLines` (what ``fetch_shards(progress=True)``
uses) logs a line; the command line's terminal bar is in :mod:`consentfetch.cli.progress`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)

LOG_EVERY = 10.0  # seconds between log lines


@dataclass(frozen=True)
class HostWait:
    """One shard's hosts backing off with rows still to fetch, as its worker saw them."""

    shard_id: int
    hosts: int
    next_try: float | None  # seconds until the soonest of them may be tried again


@dataclass(frozen=True)
class ProgressSnapshot:
    """The counts at one moment of a run: of the work this run does, so a resumed
    run's rate and ETA leave out the rows an earlier run did (``resumed``)."""

    done: int  # rows this run gave an audit row
    successes: int  # of them, images saved
    total: int | None  # rows this run will give one, when the input says
    elapsed: float  # seconds since the run started
    resumed: int = 0  # rows of the input already done by an earlier run, not redone
    estimate: bool = False  # total is an estimate (shown with "~")
    backing_off: int = 0  # hosts waiting out a backoff with rows still to fetch
    next_try: float | None = None  # seconds until the soonest of them is tried again

    def line(self) -> str:
        rate = self.successes / max(1e-9, self.elapsed)
        share = f"{100 * self.successes / self.done:.1f}%" if self.done else "-"
        about = "~" if self.estimate else ""
        if self.total:
            head = (f"{self.done}/{about}{self.total} rows "
                    f"({about}{100 * self.done / self.total:.0f}%)")
        else:
            head = f"{self.done} rows"
        if self.resumed:
            head += f" + {self.resumed} already done"
        line = f"{head}, {self.successes} images ({share} success), {rate:.1f} images/s"
        eta = self.eta
        line = line if eta is None else f"{line}, ETA {about}{duration(eta)}"
        return f"{line}{self._waiting()}"

    def _waiting(self) -> str:
        """``", 2 hosts backing off, next try in 31 s"``, or nothing."""
        if not self.backing_off:
            return ""
        hosts = "1 host" if self.backing_off == 1 else f"{self.backing_off} hosts"
        if self.next_try is None:
            return f", {hosts} backing off"
        return f", {hosts} backing off, next try in {duration(self.next_try)}"

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far, when the input's size is known."""
        if not self.total or not self.done or self.done >= self.total:
            return None
        return (self.total - self.done) * self.elapsed / self.done


def duration(seconds: float) -> str:
    """``"42 s"``, ``"3 min 05 s"``, ``"2 h 07 min"``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class ProgressView(Protocol):
    """Where progress is shown. ``show`` is called at most every ``interval``
    seconds, once more at the end if the counts moved since, then ``close``."""

    @property
    def interval(self) -> float: ...

    def show(self, snapshot: ProgressSnapshot) -> None: ...

    def close(self) -> None: ...


class LogLines:
    """A log line (logger ``consentfetch.progress``, level INFO) every 10 s."""

    interval = LOG_EVERY

    def show(self, snapshot: ProgressSnapshot) -> None:
        logger.info("progress: %s", snapshot.line())

    def close(self) -> None:
        pass


def view_of(progress: bool | ProgressView) -> ProgressView | None:
    """What a ``progress=`` argument asks for: log lines (True), nothing (False), or
    the view given."""
    if progress is True:
        return LogLines()
    if progress is False:
        return None
    return progress


class Progress:
    """Counts rows done and successes; thread-safe; shows itself now and then.

    ``total`` is the rows this run will do; ``resumed`` the input rows an earlier
    run did, shown apart. An ``estimate`` total that the count passes is raised to
    the count, so done never exceeds total.
    """

    def __init__(self, total: int | None, view: ProgressView | None = None, *,
                 resumed: int = 0, estimate: bool = False) -> None:
        self.total = total
        self.resumed = resumed
        self.estimate = estimate
        self.done = 0
        self.successes = 0
        self._view = view
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_show = 0.0
        self._shown_done = -1  # rows done at the last show
        self._waits: dict[int, tuple[int, float | None]] = {}  # shard: hosts, next try at

    def update(self, done: int, successes: int, waiting: HostWait | None = None) -> None:
        """Add rows done and successes; ``waiting`` replaces its shard's hosts backing off."""
        with self._lock:
            self.done += done
            self.successes += successes
            if self.estimate and self.total is not None and self.done > self.total:
                self.total = self.done
            if waiting is not None:
                self._wait(waiting)
            now = time.monotonic()
            view = self._view
            if view is not None and now - self._last_show >= view.interval:
                self._last_show = now
                self._show(view, now)

    def _wait(self, waiting: HostWait) -> None:
        if not waiting.hosts:
            self._waits.pop(waiting.shard_id, None)  # at most one entry per running shard
            return
        at = None if waiting.next_try is None else time.monotonic() + waiting.next_try
        self._waits[waiting.shard_id] = (waiting.hosts, at)

    def snapshot(self, now: float | None = None) -> ProgressSnapshot:
        now = now or time.monotonic()
        hosts = sum(n for n, _ in self._waits.values())
        soonest = min((at for _, at in self._waits.values() if at is not None), default=None)
        return ProgressSnapshot(self.done, self.successes, self.total, now - self._started,
                                self.resumed, self.estimate, hosts,
                                None if soonest is None else max(0.0, soonest - now))

    def _show(self, view: ProgressView, now: float) -> None:
        self._shown_done = self.done
        view.show(self.snapshot(now))

    def close(self) -> None:
        view = self._view
        if view is not None:
            with self._lock:
                if self.done != self._shown_done:
                    self._show(view, time.monotonic())
                view.close()
