"""Reply routing: this client's reply topic, demultiplexed by request id.

Each FleetClient reads a reply topic of its own, or a shared one where it keeps only the
replies marked with its client id, so replies reach the instance that asked however many
producer instances run. Within a request, chunks are ordered by (attempt, seq): a
duplicate or an older attempt's chunk is dropped, a newer attempt restarts the stream.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
from aiokafka import AIOKafkaConsumer

from contracts.codec import decode_chunk
from contracts.errors import ContractError
from contracts.names import Header
from contracts.replies import ReplyChunk
from transport.consume import each, rounds
from transport.records import Record

log = logging.getLogger(__name__)


class StreamRestarted(msgspec.Struct, frozen=True, kw_only=True):
    """The worker redid the job from the start (attempt ``attempt``): discard what came before."""

    request_id: str
    attempt: int


class ReplyInbox:
    """The chunks of one request, in order, without duplicates."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self._queue: asyncio.Queue[ReplyChunk | StreamRestarted] = asyncio.Queue()
        self._attempt = -1
        self._next_seq = 0

    def accept(self, chunk: ReplyChunk) -> None:
        if chunk.attempt < self._attempt:
            return
        if chunk.attempt > self._attempt:
            if self._attempt >= 0:
                self._queue.put_nowait(
                    StreamRestarted(request_id=self.request_id, attempt=chunk.attempt)
                )
            self._attempt = chunk.attempt
            self._next_seq = 0
        if chunk.seq != self._next_seq:  # a duplicate from a producer retry
            return
        self._next_seq += 1
        self._queue.put_nowait(chunk)

    async def get(self) -> ReplyChunk | StreamRestarted:
        return await self._queue.get()

    def get_nowait(self) -> ReplyChunk | StreamRestarted | None:
        """The next chunk if one has arrived, without waiting (None when none has)."""
        if self._queue.empty():
            return None
        return self._queue.get_nowait()


class ReplyRouter:
    """Hands each reply on the client's reply topic to the inbox of its request. On a shared
    topic, replies to other clients (another ``fleet-reply-client``, or a request id this
    client is not waiting for) are passed over without being decoded."""

    def __init__(self, consumer: AIOKafkaConsumer, client_id: str | None = None) -> None:
        self._consumer = consumer
        self._client = client_id.encode() if client_id is not None else None
        self._inboxes: dict[str, ReplyInbox] = {}
        self.unrouted = 0  # chunks for requests this client is not waiting for

    def open(self, request_id: str) -> ReplyInbox:
        inbox = ReplyInbox(request_id)
        self._inboxes[request_id] = inbox
        return inbox

    def close(self, inbox: ReplyInbox) -> None:
        # Only this inbox: a later call may already wait under the same request id.
        if self._inboxes.get(inbox.request_id) is inbox:
            del self._inboxes[inbox.request_id]

    async def run(self) -> None:
        # The fleet's one consume loop: each fetch's replies routed together, where the
        # consumer's iterator took them one call at a time. A fetch that fails (the broker
        # restarting) is tried again: the client outlives it.
        async for batches in rounds(self._consumer, retry_errors=True):
            for _, message in each(batches):
                self._route(message)

    def _route(self, message: Record) -> None:
        headers = dict(message.headers)
        if Header.HEARTBEAT in headers:
            return  # this client's own sign of life
        owner = headers.get(Header.REPLY_CLIENT)
        if owner is not None and owner != self._client:
            return  # another client's, on a shared reply topic
        if message.key is not None and message.key.decode(errors="replace") not in self._inboxes:
            self.unrouted += 1
            return
        content_type = headers.get(Header.CONTENT_TYPE)
        declared = content_type.decode(errors="replace") if content_type is not None else None
        try:
            chunk = decode_chunk(message.value or b"", declared)
        except ContractError as exc:
            log.warning("dropping an unreadable reply at offset %d: %s", message.offset, exc)
            return
        inbox = self._inboxes.get(chunk.request_id)
        if inbox is None:
            self.unrouted += 1
            return
        inbox.accept(chunk)
