"""Repeated log lines are let through once per interval, then counted."""

from __future__ import annotations

import logging

from workers.log_dedup import RepeatFilter


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("aiokafka", logging.ERROR, "x.py", 1, msg, args, None)


def test_a_repeated_message_passes_once_per_interval_and_then_says_how_many_were_held() -> None:
    now = [0.0]
    dedup = RepeatFilter(interval_s=60, clock=lambda: now[0])
    template = 'Unable connect to "%s": %s'
    passed = []
    for second in range(0, 130):
        now[0] = float(second)
        record = _record(template, "127.0.0.1:1", f"attempt {second}")
        if dedup.filter(record):
            passed.append((second, record.getMessage()))
    assert [second for second, _ in passed] == [0, 60, 120]
    assert passed[1][1].endswith("(59 more like it in the last 60 s)")
    assert dedup.filter(_record("another message"))  # other messages are not held back
