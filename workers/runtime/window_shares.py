"""Each tenant's share of a lane's window of waiting jobs, and whether a fetched record is
beyond it: what a worker parks (docs/decisions/0045-parking-a-floods-excess.md).

A tenant's share is ``window x weight / (the weights of the tenants active on the lane)``,
active meaning that it has jobs waiting or running on the lane, or that a record of it was
fetched in the last ``ACTIVE_S``. A lone tenant's share is the whole window, and nothing of
it is parked: with no one to be fair to, parking would only cost (work-conserving). The
rule is pure: the caller says what time it is and who has jobs here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Final

# A tenant counts as active this long after a record of it was fetched, even with no job
# here any more: long enough that a tenant whose few callers wait for their answers (a
# record every few hundred ms) stays active between its records, short enough that a
# tenant gone quiet gives its share back.
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
        self._pruned_at = float("-inf")

    def seen(self, tenant: str, now: float) -> None:
        """A record of ``tenant`` was fetched at ``now`` (monotonic seconds)."""
        self._last_seen[tenant] = now
        if now - self._pruned_at >= _PRUNE_EVERY_S:
            self._pruned_at = now
            for quiet in [t for t, at in self._last_seen.items() if now - at > self._active_s]:
                del self._last_seen[quiet]

    def active(self, present: Collection[str] = ()) -> set[str]:
        """The tenants fetched lately, and those of ``present`` (with jobs here now)."""
        return self._last_seen.keys() | set(present)

    def share(self, tenant: str, present: Collection[str] = ()) -> float:
        """The records of ``tenant`` (an active one) that may wait in the window."""
        return self._share(tenant, self.active(present))

    def _share(self, tenant: str, active: set[str]) -> float:
        return self._window * self._weight(tenant) / sum(map(self._weight, active))

    def beyond_share(self, tenant: str, waiting: int, present: Collection[str]) -> bool:
        """Whether a fetched record of ``tenant`` (just ``seen``), which has ``waiting``
        records waiting already, is beyond its share: it holds its share, and another tenant
        is active (``present``: the tenants with jobs waiting or running here). A tenant
        with nothing waiting always gets one place, however small its share."""
        if not waiting:
            return False
        active = self.active(present)
        return len(active) >= 2 and waiting >= self._share(tenant, active)
