"""A logging filter that lets each repeated message through once per interval: a broker or
Redis outage otherwise writes one ERROR line per reconnect attempt (one outage wrote 77,000
lines of aiokafka's to a worker log). The next one after the interval says how many were
held back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

# The client libraries whose reconnect loops repeat themselves.
CLIENT_LIBRARIES = ("aiokafka", "redis")


class RepeatFilter(logging.Filter):
    """Holds back repeats of records from the loggers under ``prefixes`` (all others pass).
    Put it on the handlers: a filter on a logger never sees its children's records."""

    def __init__(
        self,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        prefixes: tuple[str, ...] = CLIENT_LIBRARIES,
    ):
        super().__init__()
        self._interval_s = interval_s
        self._clock = clock
        self._prefixes = prefixes
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not any(record.name == p or record.name.startswith(p + ".") for p in self._prefixes):
            return True
        # Keyed by the message template, so "Unable connect to X" repeats match whatever
        # the error text says.
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        last, held = self._seen.get(key, (float("-inf"), 0))
        if now - last < self._interval_s:
            self._seen[key] = (last, held + 1)
            return False
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like it in the last {self._interval_s:g} s)"
        return True


def hold_back_repeats(logger: logging.Logger | None = None) -> RepeatFilter:
    """One RepeatFilter on every handler of ``logger`` (the root logger by default)."""
    dedup = RepeatFilter()
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(dedup)
    return dedup
