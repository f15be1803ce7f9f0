"""Commit tracking: never past the oldest unfinished job."""

from __future__ import annotations

from transport.commits import OffsetTracker


def test_commits_stop_at_the_oldest_unfinished_job() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.started("p0", offset)
    tracker.finished("p0", 11)
    tracker.finished("p0", 12)
    assert tracker.committable() == {"p0": 10}  # 10 still running: nothing past it
    tracker.committed({"p0": 10})
    assert tracker.committable() == {}
    tracker.finished("p0", 10)
    assert tracker.committable() == {"p0": 13}
    tracker.committed({"p0": 13})
    assert tracker.committable() == {}


def test_partitions_are_independent() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.started("p0", 5)
    tracker.started("p1", 7)
    tracker.finished("p1", 7)
    assert tracker.committable() == {"p0": 5, "p1": 8}
    assert tracker.committable(["p1"]) == {"p1": 8}
    assert tracker.in_flight() == 1
    assert tracker.in_flight("p1") == 0


def test_forget_drops_revoked_partitions() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.started("p0", 1)
    tracker.forget(["p0"])
    assert tracker.committable() == {}
    assert tracker.in_flight() == 0
