"""Reads the kind's control topic: every worker sees every cancel, from the moment it starts.

No consumer group (each worker must see all of them) and no history (a cancel matters only
to jobs that are still queued or running, and those are what the ledger and this worker
know about).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.codec import decode_control
from contracts.control import CancelJob
from contracts.errors import ContractError
from contracts.names import Header
from transport.consume import tail
from transport.records import Record, header
from workers.dead_letter import DeadLetters
from workers.failure_table import TENANT_UNVERIFIED, Failure, failure_of
from workers.tenants import unverified

log = logging.getLogger(__name__)


class ControlListener:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topic: str,
        on_cancel: Callable[[CancelJob], Awaitable[None]],
        tenant_keys: dict[str, bytes] | None = None,
        dead_letters: DeadLetters | None = None,
        first_to_claim: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self._consumer = consumer
        self._tenant_keys = tenant_keys
        self._dead_letters = dead_letters
        self._first_to_claim = first_to_claim
        self._partition = TopicPartition(topic, 0)
        self._on_cancel = on_cancel
        self._stopping = asyncio.Event()
        # Set once it reads from a known offset: a cancel sent after this is seen.
        self.ready = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        async for records in tail(
            self._consumer,
            self._partition,
            start="end",
            stopping=self._stopping,
            positioned=self.ready,
        ):
            for record in records:
                await self._handle(record)

    async def _handle(self, record: Record) -> None:
        """One control message; a bad one is ignored (by every replica alike), and nothing
        it holds can stop this loop."""
        try:
            content_type = header(record, Header.CONTENT_TYPE)
            message = decode_control(record.value or b"", content_type)
        except ContractError as exc:
            log.warning("ignoring a control message at offset %d: %s", record.offset, exc)
            await self._dead_letter(record, failure_of(exc), str(exc))
            return
        if (why := self._unverified(record, message)) is not None:
            log.warning("ignoring a cancel at offset %d: %s", record.offset, why)
            await self._dead_letter(record, TENANT_UNVERIFIED, why)
            return
        try:
            await self._on_cancel(message)
        except Exception:  # the ledger away: the job, if it runs, ends by itself
            log.exception("a cancel of %s could not be applied", message.request_id)

    async def _dead_letter(self, record: Record, failure: Failure, detail: str) -> None:
        """Every replica reads every control message: with the ledger, only the first to
        claim it dead-letters it; without one, each replica does."""
        if self._dead_letters is None:
            return
        try:
            claim = f"control-dead-letter:{record.topic}:{record.partition}:{record.offset}"
            if self._first_to_claim is not None and not await self._first_to_claim(claim):
                return
            await self._dead_letters.publish(record, failure, detail)
        except Exception:  # the message is ignored either way; the log says so
            log.exception(
                "the bad control message at offset %d was not dead-lettered", record.offset
            )

    def _unverified(self, record: Record, message: CancelJob) -> str | None:
        """With tenant keys configured, only a cancel its tenant signed counts: why this one
        does not, or None."""
        if self._tenant_keys is None:
            return None
        return unverified(self._tenant_keys, message.tenant, record)
