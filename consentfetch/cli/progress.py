"""The download's progress on the terminal: a one-line bar redrawn in place.

A :class:`~consentfetch.progress.ProgressView` for
:func:`~consentfetch.run.fetch_shards`; when stderr is not a terminal the
command logs progress lines instead (:class:`~consentfetch.progress.LogLines`).
"""

from __future__ import annotations

import sys
from typing import TextIO

from ..progress import LogLines, ProgressSnapshot, ProgressView

TTY_REFRESH = 0.2  # seconds between redraws
BAR_WIDTH = 24


class TerminalBar:
    """``[#####.......] 12/40 rows (30%), ...`` redrawn on one line of ``stream``."""

    interval = TTY_REFRESH

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._width = 0  # of the line on screen, so a shorter one leaves no stray characters

    def show(self, snapshot: ProgressSnapshot) -> None:
        total = snapshot.total
        if total:
            filled = int(BAR_WIDTH * snapshot.done / total)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            text = f"[{bar}] {snapshot.line()}"
        else:
            text = snapshot.line()
        self._stream.write(f"\r{text.ljust(self._width)}")
        self._width = len(text)
        self._stream.flush()

    def close(self) -> None:
        self._stream.write("\n")
        self._stream.flush()


def progress_view(stream: TextIO | None = None) -> ProgressView:
    """A bar when ``stream`` (default: stderr) is a terminal, log lines otherwise."""
    stream = stream or sys.stderr
    return TerminalBar(stream) if stream.isatty() else LogLines()
