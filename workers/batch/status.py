"""The coordinator's view of every batch's status: the status topic read from its start
and followed, and the place its own status updates are published."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from contracts.batch import BatchInfo, BatchState, decode_info
from contracts.codec import encode
from contracts.errors import ContractError
from transport.connection import KafkaConnection, start_client
from transport.consume import tail

log = logging.getLogger(__name__)


class StatusBoard:
    def __init__(self, connection: KafkaConnection, topic: str, producer: AIOKafkaProducer) -> None:
        self._connection = connection
        self._topic = topic
        self._producer = producer
        self._consumer = AIOKafkaConsumer(
            **connection.options(), group_id=None, enable_auto_commit=False
        )
        self._batches: dict[str, BatchInfo] = {}
        self._task: asyncio.Task[None] | None = None
        self.caught_up = asyncio.Event()

    def get(self, batch_id: str) -> BatchInfo | None:
        return self._batches.get(batch_id)

    async def publish(self, info: BatchInfo) -> None:
        """Record ``info`` as the batch's status (here at once, on the topic once acked)."""
        self._batches[info.id] = info
        await self._producer.send_and_wait(self._topic, encode(info), key=info.id.encode())

    async def start(self) -> None:
        await start_client(self._consumer, self._connection)
        tp = TopicPartition(self._topic, 0)
        end = (await self._consumer.end_offsets([tp]))[tp]
        self._task = asyncio.create_task(self._follow(tp, end), name="batch-status")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _follow(self, tp: TopicPartition, end: int) -> None:
        if end == 0:
            self.caught_up.set()
        async for records in tail(
            self._consumer, tp, start="beginning", wait_ms=1000, retry_errors=True
        ):
            for record in records:
                if record.value is not None:
                    self._take(record.value)
            # By position, not by the last record's offset: compaction leaves gaps.
            with contextlib.suppress(KafkaError):
                if not self.caught_up.is_set() and await self._consumer.position(tp) >= end:
                    self.caught_up.set()

    def _take(self, payload: bytes) -> None:
        try:
            info = decode_info(payload)
        except ContractError as exc:
            log.warning("skipped a record of %s: %s", self._topic, exc)
            return
        known = self._batches.get(info.id)
        if known is not None and info.owner != known.owner:
            # Clients write statuses too (a submit's first): a batch's tenant never changes,
            # or a status written by anyone could hand a batch to another tenant.
            log.warning("skipped a status of batch %s naming another tenant", info.id)
            return
        # Our own publishes are here before the topic echoes them; an older echo never
        # takes a newer status back.
        if known is None or _order(info) >= _order(known):
            self._batches[info.id] = info


# Where each state comes in a round; an end state comes last.
_STAGE = {
    BatchState.VALIDATING: 0,
    BatchState.IN_PROGRESS: 1,
    BatchState.CANCELLING: 2,
    BatchState.FINALIZING: 2,
}


def _order(info: BatchInfo) -> tuple[int, int, int]:
    """Statuses of one batch in the order they are published."""
    return (info.round, _STAGE.get(info.state, 3), info.request_counts.done)
