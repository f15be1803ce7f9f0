"""Each tenant's share of a lane's window of waiting jobs, and whether a fetched record is
beyond it: what a worker parks (docs/decisions/0045-parking-a-floods-excess.md).

A tenant's share is ``window x weight / (the weights of the tenants active on the lane)``,
active meaning that a record of it was fetched in the last ``ACTIVE_S``. A lone tenant's
share is the whole window, and nothing of it is parked: with no one to be fair to, parking
would only cost (work-conserving). The rule is pure: the caller says what time it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

# A tenant counts as active this long after a record of it was fetched: long enough that a
# tenant whose few callers wait for their answers (a record every few hundred ms) stays
# active between its records, short enough that a tenant gone quiet gives its share back.
ACTIVE_S: Final = 3.0
# How often the tenants gone quiet are dropped (the rule is asked once per record fetched).
_PRUNE_EVERY_S: Final = 0.5


class WindowShares:
    def __init__(
        self, window: int, weight: Callable[[str], float], *, active_s: float = ACTIVE_S
    ) -> None:
        self._window = window
        self._weight = weight
        self._active_s = active_s
        self._last_seen: dict[str, float] = {}
        self._total_weight = 0.0
        self._pruned_at = float("-inf")

    def seen(self, tenant: str, now: float) -> None:
        """A record of ``tenant`` was fetched at ``now`` (monotonic seconds)."""
        if tenant not in self._last_seen:
            self._total_weight += self._weight(tenant)
        self._last_seen[tenant] = now
        if now - self._pruned_at >= _PRUNE_EVERY_S:
            self._prune(now)

    def active(self) -> list[str]:
        return sorted(self._last_seen)

    def share(self, tenant: str) -> float:
        """The records of ``tenant`` (an active one) that may wait in the window."""
        return self._window * self._weight(tenant) / self._total_weight

    def beyond_share(self, tenant: str, waiting: int) -> bool:
        """Whether a fetched record of ``tenant`` (just ``seen``), which has ``waiting``
        records waiting already, is beyond its share: it holds its share, and another tenant
        is active. A tenant with nothing waiting always gets one place, however small its
        share."""
        return len(self._last_seen) > 1 and waiting >= self.share(tenant)

    def _prune(self, now: float) -> None:
        self._pruned_at = now
        quiet = [t for t, seen in self._last_seen.items() if now - seen > self._active_s]
        for tenant in quiet:
            del self._last_seen[tenant]
        # Summed afresh rather than subtracted: no rounding drift over a long run.
        self._total_weight = sum(self._weight(t) for t in self._last_seen)
