"""A consumer-group member whose records become work that ends later, out of order.

The loop fetches (``transport/consume.py``), hands each record to its ``Member``, and
commits each partition up to its oldest unfinished record (``transport/commits.py``): at
least once. When partitions move, the member first lets go of their work, then what is
finished is committed. The job consumer and the batch coordinator are its members.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from transport.commits import OffsetTracker
from transport.consume import Room, each, rounds
from transport.records import Record

log = logging.getLogger(__name__)


class Member(Protocol):
    """What a group loop runs its records through."""

    def take(self, tp: TopicPartition, record: Record) -> None:
        """Start work on a fetched record, calling the loop's ``started`` for what must wait
        for its ``finished`` before its offset is committed."""
        ...

    async def release(self, partitions: set[TopicPartition] | None) -> None:
        """Partitions move away (None: the loop ends): finish or hand back their work."""
        ...


class GroupLoop:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topics: Sequence[str],
        member: Member,
        *,
        room: Room | None = None,
        commit_interval_s: float = 0.2,
        ready: asyncio.Event | None = None,
        ready_unassigned: bool = False,
    ) -> None:
        """``ready`` (the member's own, when it has one) is set once partitions are
        assigned; with ``ready_unassigned`` at the first assignment even of none (a
        standby member is serving too)."""
        self._consumer = consumer
        self._topics = list(topics)
        self._member = member
        self._room = room
        self._commit_interval_s = commit_interval_s
        self._ready_unassigned = ready_unassigned
        self._tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self._stopping = asyncio.Event()
        self.ready = ready or asyncio.Event()
        self.revocations = 0  # rebalances that took partitions away from this member
        self._last_turn = time.monotonic()

    def started(self, tp: TopicPartition, offset: int) -> None:
        self._tracker.started(tp, offset)

    def finished(self, tp: TopicPartition, offset: int) -> None:
        self._tracker.finished(tp, offset)

    def stop(self) -> None:
        """Stop fetching; ``run`` then lets the member release its work, commits, returns."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        self._consumer.subscribe(self._topics, listener=_Rebalance(self))
        committer = asyncio.create_task(self._commit_periodically(), name="committer")
        try:
            async for batches in rounds(self._consumer, stopping=self._stopping, room=self._room):
                self._last_turn = time.monotonic()
                for tp, record in each(batches):
                    self._member.take(tp, record)
        finally:
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
            await self._member.release(None)
            await self.commit()

    def stalled_s(self) -> float:
        """Seconds since the loop last came round (it does at least once a second)."""
        return time.monotonic() - self._last_turn

    async def commit(self, partitions: list[TopicPartition] | None = None) -> None:
        """Commit what is finished, of the partitions the consumer still owns (of
        ``partitions`` only, when given). A commit that fails is tried at the next call."""
        owned = self._consumer.assignment()
        offsets = {
            tp: offset
            for tp, offset in self._tracker.committable(partitions).items()
            if tp in owned
        }
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("commit of %s failed: %s", offsets, exc)
            return
        self._tracker.committed(offsets)

    async def lag(self) -> dict[int, int]:
        """Records not yet fetched, per assigned partition (from the last fetch's high
        watermark; partitions not fetched yet are left out)."""
        result: dict[int, int] = {}
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue
            with contextlib.suppress(KafkaError, AssertionError):
                result[tp.partition] = max(highwater - await self._consumer.position(tp), 0)
        return result

    async def _commit_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._commit_interval_s)
            await self.commit()

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            self.revocations += 1
        await self._member.release(revoked)
        await self.commit(list(revoked))
        self._tracker.forget(revoked)

    def _assigned(self, assigned: set[TopicPartition]) -> None:
        if assigned or self._ready_unassigned:
            self.ready.set()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: GroupLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._loop._revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._loop._assigned(assigned)
