"""Progress for a run: a one-line bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO

logger = logging.getLogger(__name__)

TTY_REFRESH = 0.2  # seconds between redraws on a terminal
LOG_EVERY = 10.0  # seconds between log lines when not on a terminal


class Progress:
    """Counts rows done and successes; thread-safe; draws itself now and then."""

    def __init__(self, total: int | None, *, enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self.successes = 0
        self.enabled = enabled
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._drawn_done = -1  # rows done at the last draw

    def update(self, done: int, successes: int) -> None:
        with self._lock:
            self.done += done
            self.successes += successes
            now = time.monotonic()
            if self.enabled and now - self._last_draw >= (TTY_REFRESH if self._tty else LOG_EVERY):
                self._last_draw = now
                self._draw(now)

    def line(self, now: float | None = None) -> str:
        elapsed = max(1e-9, (now or time.monotonic()) - self._started)
        rate = self.successes / elapsed
        share = f"{100 * self.successes / self.done:.1f}%" if self.done else "-"
        if self.total:
            head = f"{self.done}/{self.total} rows ({100 * self.done / self.total:.0f}%)"
        else:
            head = f"{self.done} rows"
        return f"{head}, {self.successes} images ({share} success), {rate:.1f} images/s"

    def _draw(self, now: float) -> None:
        self._drawn_done = self.done
        if self._tty:
            width = 24
            filled = int(width * self.done / self.total) if self.total else 0
            bar = "#" * filled + "." * (width - filled) if self.total else ""
            self._stream.write(f"\r[{bar}] {self.line(now)}" if bar else f"\r{self.line(now)}")
            self._stream.flush()
        else:
            logger.info("progress: %s", self.line(now))

    def close(self) -> None:
        if self.enabled:
            with self._lock:
                if self.done != self._drawn_done:
                    self._draw(time.monotonic())
                if self._tty:
                    self._stream.write("\n")
                    self._stream.flush()
