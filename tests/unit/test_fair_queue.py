"""The deficit round robin that picks the next job of a full lane (workers/runtime/
fair_queue.py): weighted shares of the cost while every tenant is busy, and nothing kept
for a tenant that is not."""

from __future__ import annotations

from collections import Counter

import pytest

from workers.runtime.fair_queue import MAX_COST, FairQueue


def _flood(queue: FairQueue[int], tenants: str, jobs: int) -> None:
    """``jobs`` jobs for each tenant, of costs that differ from job to job."""
    for number in range(jobs):
        for tenant in tenants:
            queue.push(tenant, 300 + (number * 37 + ord(tenant)) % 500, number)


def _cost_started(queue: FairQueue[int], jobs: int) -> Counter[str]:
    started: Counter[str] = Counter()
    for _ in range(jobs):
        tenant, cost, _ = queue.pop()
        started[tenant] += cost
    return started


def test_weights_two_one_one_give_shares_of_two_one_one_while_all_are_busy() -> None:
    queue: FairQueue[int] = FairQueue({"a": 2})
    _flood(queue, "abc", 2000)
    started = _cost_started(queue, 2000)  # every tenant still has jobs waiting after these
    assert set(queue.queued()) == {"a", "b", "c"}
    total = sum(started.values())
    assert started["a"] / total == pytest.approx(0.5, abs=0.01)
    assert started["b"] / total == pytest.approx(0.25, abs=0.01)
    assert started["c"] / total == pytest.approx(0.25, abs=0.01)


def test_shares_count_cost_not_jobs() -> None:
    """A tenant of big jobs starts fewer of them: the shares are of the cost."""
    queue: FairQueue[str] = FairQueue()
    for number in range(100):
        queue.push("big", 1000, f"big-{number}")
        for small in range(10):
            queue.push("small", 100, f"small-{number}-{small}")
    started = [queue.pop()[0] for _ in range(110)]
    assert started.count("big") == pytest.approx(10, abs=1)
    assert started.count("small") == pytest.approx(100, abs=10)


def test_a_tenant_with_nothing_waiting_leaves_its_share_to_the_others() -> None:
    """Work-conserving: an idle tenant holds no slot back; the busy ones split it by their
    weights."""
    queue: FairQueue[int] = FairQueue({"a": 2})
    _flood(queue, "bc", 1000)
    started = _cost_started(queue, 1000)
    total = sum(started.values())
    assert started["b"] / total == pytest.approx(0.5, abs=0.01)
    assert len(queue) == 1000


def test_an_idle_tenant_saves_no_credit_for_later() -> None:
    """B was away while A ran alone; back, B alternates with A instead of taking a run of
    turns for the time it was away."""
    queue: FairQueue[str] = FairQueue()
    for number in range(50):
        queue.push("a", 100, f"a-{number}")
    for _ in range(20):
        queue.pop()
    for number in range(10):
        queue.push("b", 100, f"b-{number}")
    started = [queue.pop()[0] for _ in range(10)]
    assert started.count("b") == 5


def test_few_jobs_of_a_second_tenant_start_before_a_flood_drains() -> None:
    queue: FairQueue[str] = FairQueue()
    for number in range(100):
        queue.push("a", 600, f"a-{number}")
    queue.push("b", 600, "b-0")
    queue.push("b", 600, "b-1")
    started = [queue.pop()[2] for _ in range(4)]
    assert {"b-0", "b-1"} <= set(started)


def test_dropped_jobs_leave_the_queue_and_the_rest_keep_their_order() -> None:
    queue: FairQueue[tuple[int, int]] = FairQueue()
    for offset in range(6):
        queue.push("ab"[offset % 2], 10, (offset % 3, offset))  # (partition, offset)
    dropped = queue.drop(lambda job: job[0] == 1)
    assert sorted(dropped) == [(1, 1), (1, 4)]
    assert len(queue) == 4
    rest = [queue.pop()[2] for _ in range(4)]
    assert sorted(rest) == [(0, 0), (0, 3), (2, 2), (2, 5)]
    assert [job for job in rest if job[0] == 0] == [(0, 0), (0, 3)]
    with pytest.raises(IndexError):
        queue.pop()


@pytest.mark.timeout(10)  # the bug this guards against spun for ever
def test_a_cost_beyond_what_a_float_credit_counts_is_capped_and_starts() -> None:
    queue: FairQueue[str] = FairQueue({"a": 2})
    queue.push("a", 2**63 + 1, "huge-a")
    queue.push("b", 2**63 + 8, "huge-b")
    queue.push("c", 10**40, "huger-c")
    queue.push("c", 3, "small-c")
    started = [queue.pop() for _ in range(4)]
    assert sorted(job for _, _, job in started) == ["huge-a", "huge-b", "huger-c", "small-c"]
    assert max(cost for _, cost, _ in started) == MAX_COST
