"""A one-line progress bar for the batch commands, on stderr when it is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 28  # characters of the bar itself
REDRAW_S = 0.1  # at most ten redraws a second: a fast run is not slowed by its own display


class Progress:
    """Counts lines done; draws `label [####....] done/total pct rate` in place.

    Silent unless the stream is a terminal (a pipe or a file gets only the command's own
    output); with an unknown total (stdin) it shows the count and the rate.
    """

    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self._started = time.monotonic()
        self._drawn = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self._drawn >= REDRAW_S:
            self._drawn = now
            self.stream.write("\r" + self.render(now - self._started) + "\x1b[K")
            self.stream.flush()

    def render(self, elapsed_s: float) -> str:
        rate = f"{self.done / elapsed_s:,.0f}/s" if elapsed_s > 0 else ""
        if not self.total:
            return f"{self.label} {self.done:,} lines {rate}"
        share = min(self.done / self.total, 1.0)
        filled = round(share * WIDTH)
        bar = "#" * filled + "." * (WIDTH - filled)
        return f"{self.label} [{bar}] {self.done:,}/{self.total:,} {share:4.0%} {rate}"

    def close(self) -> None:
        """Erase the bar, so what follows starts on a clean line."""
        if self.enabled and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
