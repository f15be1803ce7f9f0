"""Publishing reply chunks for one job, in order, and knowing when they are all delivered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypedDict

from contracts.codec import encode
from contracts.embed_parts import split_embed_result
from contracts.envelope import ReplyAddress
from contracts.errors import ErrorCode
from contracts.names import ContentType, Header
from contracts.replies import Chunk, EmbedResult, ErrorReply, Final, ReplyChunk, TextDelta
from transport.publisher import Publisher
from workers.failure_table import ReplyTooLarge
from workers.settings import DEFAULT_REPLY_LIMITS, ReplyLimits


class ChunkHead(TypedDict):
    """What every chunk of one attempt starts with: the request, the attempt, its number."""

    request_id: str
    attempt: int
    seq: int


class ChunkStamper:
    """Numbers the chunks of one attempt of one request, from 0: a handler builds each
    chunk on ``head()`` (``GenerateResult(**stamper.head(), text=...)``) and never
    numbers one itself."""

    def __init__(self, request_id: str, attempt: int) -> None:
        self.request_id = request_id
        self.attempt = attempt
        self._seq = 0

    def next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def resume_at(self, seq: int) -> None:
        """Number the next chunk ``seq``: after a chunk that was never sent, the caller (who
        takes chunks strictly in order) still waits for that number."""
        self._seq = seq

    def head(self) -> ChunkHead:
        """The head of the next chunk, numbered."""
        return {"request_id": self.request_id, "attempt": self.attempt, "seq": self.next_seq()}

    def delta(self, text: str) -> TextDelta:
        return TextDelta(**self.head(), text=text)

    def error(self, code: ErrorCode, message: str) -> ErrorReply:
        return ErrorReply(**self.head(), code=code, message=message, retryable=code.retryable)


class GoneTopics:
    """Reply topics that could not be reached lately (their client went away).

    Sending to a topic that no longer exists waits for its metadata until the producer's
    request timeout; remembering the topic lets later jobs for the same dead client go
    straight to the dead-letter topic instead of costing a model call and that wait each.
    """

    def __init__(self, ttl_s: float = 300.0) -> None:
        self._ttl_s = ttl_s
        self._until: dict[str, float] = {}

    def mark(self, topic: str) -> None:
        self._until[topic] = time.monotonic() + self._ttl_s

    def __contains__(self, topic: object) -> bool:
        until = self._until.get(topic) if isinstance(topic, str) else None
        if until is None:
            return False
        if until < time.monotonic():
            del self._until[topic]  # type: ignore[arg-type]
            return False
        return True


# Sees a job's final chunk before it is sent (the ledger stores it first), and says what to
# send instead of it: None for the final itself (``ReplyStream.keep_finals``).
FinalKeeper = Callable[[Final], Awaitable[Sequence[Chunk] | None]]


class ReplyStream:
    """Sends one job's chunks to its reply address; ``flush`` waits until all are stored.

    Chunks are handed to the producer without waiting for each acknowledgement: one
    producer keeps the order of messages to one partition, and the job is only committed
    after ``flush``.
    """

    def __init__(
        self,
        producer: Publisher,
        address: ReplyAddress | None,
        content_type: str = ContentType.MSGPACK,
        limits: ReplyLimits = DEFAULT_REPLY_LIMITS,
    ) -> None:
        self._producer = producer
        self._address = address
        self._content_type = content_type
        self._limits = limits
        self._headers = [(Header.CONTENT_TYPE, content_type.encode())]
        if address is not None and address.client is not None:
            self._headers.append((Header.REPLY_CLIENT, address.client.encode()))
        self._pending: list[asyncio.Future[Any]] = []
        self._keeper: FinalKeeper | None = None
        self.sent = 0  # chunks handed to the producer: also the next seq the caller expects

    def keep_finals(self, keeper: FinalKeeper) -> None:
        """Hand each final chunk to ``keeper`` before it is sent, and send what it says: the
        ledger stores the final first, so that a worker killed at the send is replayed
        rather than run again, and answers with the final another run of the job stored
        before it (docs/decisions/0028-final-stored-before-sent.md)."""
        self._keeper = keeper

    async def send(self, chunk: ReplyChunk) -> None:
        """Hand one chunk to the producer; an embed result larger than one message goes as
        several (EmbedPart chunks, then the result with the last rows). A chunk too large
        to send is refused before the keeper sees it: nothing unsendable is stored."""
        messages = self._messages(chunk) if self._address is not None else []
        if self._keeper is not None and isinstance(chunk, Final):
            instead = await self._keeper(chunk)  # a fire-and-forget job's final is kept too
            if instead is not None and self._address is not None:
                messages = [value for other in instead for value in self._messages(other)]
        for value in messages:
            await self._send(chunk.request_id, value)

    def _messages(self, chunk: Chunk) -> list[bytes]:
        """The messages that carry ``chunk``, each small enough for the broker."""
        value = self._encode(chunk)
        limits = self._limits
        if len(value) > limits.max_bytes:
            raise ReplyTooLarge(
                f"{len(value)} bytes, more than the fleet's limit on one reply "
                f"(replies.max_bytes = {limits.max_bytes})"
            )
        if len(value) <= limits.part_bytes:
            return [value]
        if isinstance(chunk, EmbedResult):
            return split_embed_result(chunk, value, self._encode, limits.part_bytes)
        # Refused here, not by the producer after the ledger stored it as the job's answer.
        raise ReplyTooLarge(
            f"{len(value)} bytes, more than one reply message may hold "
            f"(replies.part_bytes = {limits.part_bytes})"
        )

    def _encode(self, chunk: object) -> bytes:
        return encode(chunk, self._content_type)

    async def _send(self, request_id: str, value: bytes) -> None:
        assert self._address is not None
        future = await self._producer.send(
            self._address.topic,
            value=value,
            key=request_id.encode(),
            partition=self._address.partition,
            headers=self._headers,
        )
        self._pending.append(future)
        self.sent += 1

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        if len(pending) == 1:  # most replies are one final chunk: no gather for it
            await pending[0]
        elif pending:
            await asyncio.gather(*pending)
