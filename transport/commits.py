"""Which offsets are safe to commit when jobs finish out of order.

Kafka commits one offset per partition, meaning "everything before this is done". With
several jobs in flight, that is the oldest unfinished offset, or one past the highest
offset seen when nothing is in flight.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

K = TypeVar("K")  # partition key (aiokafka's TopicPartition in the worker)


class OffsetTracker(Generic[K]):
    def __init__(self) -> None:
        self._in_flight: dict[K, set[int]] = {}
        self._next: dict[K, int] = {}  # one past the highest offset started
        self._committed: dict[K, int] = {}

    def started(self, partition: K, offset: int) -> None:
        self._in_flight.setdefault(partition, set()).add(offset)
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def finished(self, partition: K, offset: int) -> None:
        self._in_flight.get(partition, set()).discard(offset)

    def in_flight(self, partition: K | None = None) -> int:
        if partition is not None:
            return len(self._in_flight.get(partition, ()))
        return sum(len(offsets) for offsets in self._in_flight.values())

    def committable(self, partitions: Iterable[K] | None = None) -> dict[K, int]:
        """Offsets to commit now: only partitions whose safe offset moved since last commit."""
        result: dict[K, int] = {}
        for partition in self._next if partitions is None else partitions:
            if partition not in self._next:
                continue
            pending = self._in_flight.get(partition)
            safe = min(pending) if pending else self._next[partition]
            if safe > self._committed.get(partition, -1):
                result[partition] = safe
        return result

    def committed(self, offsets: dict[K, int]) -> None:
        for partition, offset in offsets.items():
            self._committed[partition] = max(offset, self._committed.get(partition, -1))

    def forget(self, partitions: Iterable[K]) -> None:
        """Drop state for partitions this consumer no longer owns."""
        for partition in partitions:
            self._in_flight.pop(partition, None)
            self._next.pop(partition, None)
            self._committed.pop(partition, None)
