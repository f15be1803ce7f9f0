"""Deficit round robin over tenants: which waiting job of a lane starts next when its
slots are full (docs/decisions/0044-fair-queuing-in-a-lane.md).

Tenants with jobs waiting take turns. At the start of its turn a tenant earns ``quantum x
weight`` of credit and starts jobs while the cost of its oldest fits its credit, so over
time each busy tenant's share of the cost started follows its weight, whatever the sizes of
its jobs. A tenant whose queue empties loses its credit: an idle tenant saves nothing up.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, KeysView, Mapping
from typing import Final, Generic, TypeVar

T = TypeVar("T")

# Credit per turn at weight 1, in cost units. Small, so that a turn starts about one job and
# tenants alternate finely (a big quantum lets a heavy tenant start a long run of jobs in
# one turn while the others wait). Rounds in which nobody could start anything are skipped
# in one step, so a cost far above the quantum costs no time.
DEFAULT_QUANTUM: Final = 1
# A cost is the producer's word (the `fleet-cost` header, which anyone who can write to the
# topic sets). Credit is a float: far above this a quantum no longer changes it, and the
# round robin would spin for ever on a job it can never afford (the fuzz test sent
# 2**63 + 1). No real job comes near it: a cost counts tokens, seconds or characters.
MAX_COST: Final = 2**32


class FairQueue(Generic[T]):
    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        *,
        default_weight: float = 1.0,
        quantum: float = DEFAULT_QUANTUM,
    ) -> None:
        self._weights = dict(weights or {})
        self._default_weight = default_weight
        self._quantum = quantum
        # The tenants with jobs waiting, the one whose turn it is first.
        self._queues: dict[str, deque[tuple[int, T]]] = {}
        self._credit: dict[str, float] = {}
        self._turn_paid = False  # whether the first tenant has earned its credit this turn
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def weight(self, tenant: str) -> float:
        return self._weights.get(tenant, self._default_weight)

    def queued(self) -> dict[str, int]:
        """Jobs waiting, per tenant."""
        return {tenant: len(queue) for tenant, queue in self._queues.items()}

    def tenants(self) -> KeysView[str]:
        """The tenants with jobs waiting."""
        return self._queues.keys()

    def waiting(self, tenant: str) -> int:
        """Jobs of ``tenant`` waiting."""
        queue = self._queues.get(tenant)
        return len(queue) if queue is not None else 0

    def credit(self) -> dict[str, float]:
        """Each waiting tenant's credit, in cost units (what `fleet status` shows)."""
        return dict(self._credit)

    def push(self, tenant: str, cost: int, item: T) -> None:
        queue = self._queues.get(tenant)
        if queue is None:
            queue = self._queues[tenant] = deque()
            self._credit[tenant] = 0.0
        queue.append((min(max(cost, 1), MAX_COST), item))
        self._size += 1

    def pop(self) -> tuple[str, int, T]:
        """The next job to start: its tenant, its cost and itself. IndexError when empty."""
        if not self._size:
            raise IndexError("pop from an empty FairQueue")
        if len(self._queues) == 1:  # alone: no one to be fair to, no credit to keep
            tenant = next(iter(self._queues))
            started = self._start(tenant)
            if tenant in self._credit:
                self._credit[tenant] = 0.0
            return started
        unserved = 0
        while True:
            tenant = next(iter(self._queues))
            if not self._turn_paid:
                self._credit[tenant] += self._quantum * self.weight(tenant)
                self._turn_paid = True
            if self._queues[tenant][0][0] <= self._credit[tenant]:
                return self._start(tenant)
            self._end_turn(tenant)
            unserved += 1
            if unserved == len(self._queues):
                self._skip_idle_rounds()
                unserved = 0

    def drop(self, unwanted: Callable[[T], bool]) -> list[T]:
        """Take out every waiting job that ``unwanted`` picks (its partition moved away)."""
        dropped: list[T] = []
        first = next(iter(self._queues), None)
        for tenant in list(self._queues):
            kept: deque[tuple[int, T]] = deque()
            for cost, item in self._queues[tenant]:
                if unwanted(item):
                    dropped.append(item)
                else:
                    kept.append((cost, item))
            self._queues[tenant] = kept
            if not kept:
                self._forget(tenant)
        if next(iter(self._queues), None) != first:
            self._turn_paid = False
        self._size -= len(dropped)
        return dropped

    def _start(self, tenant: str) -> tuple[str, int, T]:
        cost, item = self._queues[tenant].popleft()
        self._size -= 1
        self._credit[tenant] -= cost
        if not self._queues[tenant]:
            self._forget(tenant)
            self._turn_paid = False
        return tenant, cost, item

    def _forget(self, tenant: str) -> None:
        del self._queues[tenant], self._credit[tenant]

    def _end_turn(self, tenant: str) -> None:
        self._queues[tenant] = self._queues.pop(tenant)  # to the back of the line
        self._turn_paid = False

    def _skip_idle_rounds(self) -> None:
        """A whole round started nothing: add at once the credit of the rounds that would
        still start nothing, so the next round starts a job."""
        rounds = min(
            math.ceil((queue[0][0] - self._credit[tenant]) / (self._quantum * self.weight(tenant)))
            for tenant, queue in self._queues.items()
        )
        for tenant in self._queues:
            self._credit[tenant] += (rounds - 1) * self._quantum * self.weight(tenant)
