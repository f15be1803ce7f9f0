"""The rule that decides what a worker parks (workers/runtime/window_shares.py, decision
0045): a tenant's records beyond its weighted share of the window of the tenants active on
the lane, never a lone tenant's, never a tenant's first waiting record."""

from __future__ import annotations

from workers.runtime.window_shares import ACTIVE_S, WindowShares


def _shares(weights: dict[str, float] | None = None, window: int = 16) -> WindowShares:
    return WindowShares(window, lambda tenant: (weights or {}).get(tenant, 1.0))


def _kept(shares: WindowShares, tenant: str, present: frozenset[str] = frozenset()) -> int:
    """How many of ``tenant``'s records may wait before the next is beyond its share."""
    waiting = 0
    while not shares.beyond_share(tenant, waiting, present):
        waiting += 1
    return waiting


def test_a_lone_tenant_is_never_parked_however_much_waits() -> None:
    shares = _shares()
    shares.seen("a", now=0.0)
    assert not shares.beyond_share("a", 10_000, {"a"})


def test_active_tenants_share_the_window_by_weight() -> None:
    shares = _shares({"a": 2.0})
    for tenant in "abc":
        shares.seen(tenant, now=0.0)
    assert [shares.share(t) for t in "abc"] == [8.0, 4.0, 4.0]
    assert [_kept(shares, t) for t in "abc"] == [8, 4, 4]


def test_an_equal_share_that_is_not_whole_keeps_the_next_whole_record() -> None:
    shares = _shares()
    for tenant in "abc":
        shares.seen(tenant, now=0.0)
    assert _kept(shares, "a") == 6  # 16 / 3 = 5.33: the sixth still fits under it


def test_a_tenant_with_nothing_waiting_keeps_one_however_small_its_share() -> None:
    shares = _shares(window=4)
    for number in range(10):
        shares.seen(f"t{number}", now=0.0)
    assert shares.share("t0") == 0.4
    assert not shares.beyond_share("t0", 0, set())
    assert shares.beyond_share("t0", 1, set())


def test_a_tenant_gone_quiet_gives_its_share_back() -> None:
    shares = _shares()
    shares.seen("b", now=0.0)
    shares.seen("a", now=0.0)
    assert shares.share("a") == 8.0
    # A floods on; B's last record was fetched longer ago than ACTIVE_S, and B has no job
    # here any more.
    shares.seen("a", now=ACTIVE_S + 1.0)
    assert shares.active() == {"a"}
    assert not shares.beyond_share("a", 100, {"a"})
    # B comes back: the window is shared again at once.
    shares.seen("b", now=ACTIVE_S + 1.1)
    assert shares.share("a") == 8.0
    assert shares.beyond_share("a", 8, {"a"})


def test_a_tenant_with_a_job_here_stays_active_however_long_ago_it_was_fetched() -> None:
    shares = _shares()
    shares.seen("b", now=0.0)  # B's one job: still running (or waiting) much later
    shares.seen("a", now=10 * ACTIVE_S)
    assert shares.active({"a", "b"}) == {"a", "b"}
    assert shares.beyond_share("a", 8, {"a", "b"})
    assert not shares.beyond_share("a", 8, {"a"})  # once B's job has ended
