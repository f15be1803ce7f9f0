"""The progress line of a running batch: a bar, rows done and failed, rows/s, ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from contracts.batch import BatchInfo

# Without a terminal (a log file, CI) a line is printed this often instead of redrawn.
PLAIN_EVERY_S = 10.0


class BatchProgress:
    def __init__(self, out: TextIO = sys.stderr) -> None:
        self._out = out
        self._tty = out.isatty()
        self._first: tuple[float, int] | None = None  # when we began watching, rows done then
        self._printed_at = 0.0
        self._last = ""

    def __call__(self, info: BatchInfo) -> None:
        now = time.monotonic()
        done = info.request_counts.done
        if self._first is None:
            self._first = (now, done)
        line = self.line(info, now)
        if line == self._last:
            return
        if self._tty:
            print(f"\r{line}\x1b[K", end="", file=self._out, flush=True)
        elif info.ended or now - self._printed_at >= PLAIN_EVERY_S:
            print(line, file=self._out, flush=True)
            self._printed_at = now
        self._last = line

    def line(self, info: BatchInfo, now: float) -> str:
        counts = info.request_counts
        total = max(counts.total, 1)
        width = 30
        filled = min(width, width * counts.done // total)
        bar = "#" * filled + "-" * (width - filled)
        rate = self._rate(counts.done, now)
        left = counts.total - counts.done
        eta = f", ETA {_duration(left / rate)}" if rate > 0 and left and not info.ended else ""
        return (
            f"[{bar}] {counts.done:,}/{counts.total:,} rows, {counts.failed:,} failed, "
            f"{rate:,.0f} rows/s{eta}, {info.status}"
        )

    def _rate(self, done: int, now: float) -> float:
        if self._first is None or now <= self._first[0]:
            return 0.0
        return (done - self._first[1]) / (now - self._first[0])

    def end(self) -> None:
        if self._tty and self._last:
            print(file=self._out, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
