"""Repeated log lines are let through once per interval, then counted."""

from __future__ import annotations

import logging

from workers.log_dedup import RepeatFilter, hold_back_repeats


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


def test_repeats_of_a_client_library_child_logger_are_held_back_at_the_handler() -> None:
    # aiokafka logs from aiokafka.consumer.fetcher and friends: a filter on the "aiokafka"
    # logger itself would never see them.
    logger = logging.getLogger("test-dedup-root")
    logger.propagate = False
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(f"{record.name}: {record.getMessage()}")

    logger.addHandler(Collect())
    hold_back_repeats(logger)
    child = logging.getLogger("test-dedup-root.aiokafka.consumer.fetcher")
    child.name = "aiokafka.consumer.fetcher"  # as the library names it
    for attempt in range(100):
        child.error("Failed fetch messages from %s: %s", 1, f"attempt {attempt}")
    logger.getChild("workers").error("a job failed")
    logger.getChild("workers").error("a job failed")
    assert seen == [
        "aiokafka.consumer.fetcher: Failed fetch messages from 1: attempt 0",
        "test-dedup-root.workers: a job failed",
        "test-dedup-root.workers: a job failed",
    ]
