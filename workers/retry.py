"""The retry budget of a job, and its delayed redeliveries through tier topics, so that a
job that must wait never blocks its partition.

A retryable failure re-publishes the original message to the retry topic of the smallest
tier that covers the wanted delay (backoff by retry count, or the provider's Retry-After).
Every message on a tier waits the same time, so each tier's forwarder only ever waits for
the message at its head, then moves it back onto the request topic of the lane it came from
(the tiers are shared by both lanes; a header names the lane).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Annotated

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from contracts.errors import ContractError, ContractViolation
from contracts.names import LANES, Header, Lane, as_lane, lane_topic, retry_topic
from providers.errors import ProviderError
from transport.connection import passing
from transport.consume import each_record
from transport.publisher import Publisher
from transport.records import Record
from workers.dead_letter import DeadLetters
from workers.failure_table import RetryTooLarge, failure_of
from workers.service_wait import SERVICE_WAIT

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole retry budget of one job (the worker setting ``retry``).

    A retryable provider failure (rate_limit, timeout, provider_down) is first retried inside
    the provider call for short waits, up to that provider's ``retry.max_attempts``
    (``providers.call_retry.CallRetryPolicy``, 3 by default). What still fails is redelivered
    through the delay tiers, up to ``max_retries`` times; then it is dead-lettered as
    ``retries_exhausted`` and the caller gets the error. So one job makes at most
    ``max_provider_calls(call attempts)`` provider calls: 3 x (3 + 1) = 12 by default.
    """

    max_retries: Annotated[int, msgspec.Meta(ge=0)] = 3
    # Delay tiers in seconds; retry n waits tiers[n] (the last tier repeats).
    tiers_s: Annotated[tuple[float, ...], msgspec.Meta(min_length=1)] = (1.0, 5.0, 30.0)

    def max_provider_calls(self, call_attempts: int) -> int:
        """The most provider calls one job can make: every delivery makes all its attempts."""
        return call_attempts * (self.max_retries + 1)


# A retry count, attempt number or due time beyond this is not one the fleet wrote.
_MAX_HEADER_INT = 2**53


def _int_header(headers: Sequence[tuple[str, bytes]], name: str) -> int:
    """The header's value as a number (0 when absent); anything but the decimal number the
    fleet writes is a ContractError: headers are as untrusted as the message."""
    for key, value in headers:
        if key == name:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else ""
            if not (text.isascii() and text.isdigit()) or int(text) > _MAX_HEADER_INT:
                raise ContractError(
                    f"header {name} is {text[:40]!r}, not a count",
                    reason=ContractViolation.BAD_HEADER,
                )
            return int(text)
    return 0


def retry_lane(headers: Sequence[tuple[str, bytes]]) -> Lane:
    """The lane a deferred record goes back to (interactive when the header is absent:
    records deferred before there were lanes); any other value is a ContractError."""
    for key, value in headers:
        if key == Header.RETRY_LANE:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else ""
            try:
                return as_lane(text)
            except ValueError:
                raise ContractError(
                    f"header {Header.RETRY_LANE} is {text[:40]!r}, not a lane",
                    reason=ContractViolation.BAD_HEADER,
                ) from None
    return "interactive"


def way_back(delay_s: float, lane: Lane) -> Headers:
    """The headers a deferred copy (a retry tier's, or a parked record's) carries for
    ``RedeliveryForwarder``: when it is due, and the lane it goes back to."""
    due_ms = int((time.time() + delay_s) * 1000)
    return [(Header.RETRY_NOT_BEFORE_MS, str(due_ms).encode()), (Header.RETRY_LANE, lane.encode())]


def retry_count(headers: Sequence[tuple[str, bytes]]) -> int:
    return _int_header(headers, Header.RETRY_COUNT)


def attempt_floor(request_attempt: int, headers: Sequence[tuple[str, bytes]]) -> int:
    """The lowest attempt number this delivery may run as. A redelivery through a retry tier
    carries the number after the attempt that failed (the ledger's count included), so the
    numbers rise with or without the ledger, and after Redis lost its counter."""
    carried = _int_header(headers, Header.RETRY_ATTEMPT)
    return max(request_attempt + retry_count(headers), carried)


class RedeliveryScheduler:
    def __init__(self, producer: Publisher, kind: str, namespace: str, policy: RetryPolicy) -> None:
        self._producer = producer
        self._kind = kind
        self._namespace = namespace
        self.policy = policy

    def topics(self) -> list[str]:
        return [retry_topic(self._kind, d, self._namespace) for d in self.policy.tiers_s]

    def exhausted(self, record: Record) -> bool:
        return retry_count(record.headers) >= self.policy.max_retries

    async def schedule(
        self,
        record: Record,
        error: ProviderError,
        *,
        next_attempt: int,
        lane: Lane = "interactive",
    ) -> float:
        """Copy the record to the tier that covers the wanted delay, to run again as attempt
        ``next_attempt`` (at least) on ``lane``; that delay, in seconds. RetryTooLarge when
        the broker would not take the copy (the request near its limit)."""
        count = retry_count(record.headers)
        wanted = self.policy.tiers_s[min(count, len(self.policy.tiers_s) - 1)]
        if error.retry_after_s is not None:
            wanted = max(wanted, error.retry_after_s)
        delay = next((t for t in self.policy.tiers_s if t >= wanted), self.policy.tiers_s[-1])
        headers: Headers = [
            (k, v) for k, v in record.headers if not k.startswith(Header.RETRY_PREFIX)
        ]
        headers += [
            (Header.RETRY_COUNT, str(count + 1).encode()),
            (Header.RETRY_REASON, f"{error.code}: {error.detail}"[:500].encode()),
            (Header.RETRY_ATTEMPT, str(next_attempt).encode()),
            *way_back(delay, lane),
        ]
        topic = retry_topic(self._kind, delay, self._namespace)
        try:
            await self._producer.send_and_wait(topic, record.value, key=record.key, headers=headers)
        except MessageSizeTooLargeError as exc:
            size = len(record.value or b"")
            raise RetryTooLarge(
                f"the {self._kind} request is {size} bytes: with the headers of a retry it is "
                f"more than the broker takes ({exc}), so it cannot be tried again; send a "
                "smaller one"
            ) from exc
        log.info("retry %d of %s in %gs (%s)", count + 1, record.key, delay, error.code)
        return delay


class RedeliveryForwarder:
    """Moves due messages from one deferred topic (a retry tier, or the park topic:
    ``workers/parking.py``) back onto the request topic of their lane."""

    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        producer: Publisher,
        kind: str,
        namespace: str,
        source: str,
        dead_letters: DeadLetters,
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._dead_letters = dead_letters
        self._source = source
        self._targets = {lane: lane_topic(kind, lane, namespace) for lane in LANES}
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        self._consumer.subscribe([self._source])
        await each_record(self._consumer, self._forward, stopping=self._stopping, max_records=100)

    async def _forward(self, tp: TopicPartition, record: Record) -> None:
        try:
            target = self._targets[retry_lane(record.headers)]
            due = await self._wait_until_due(record)
        except ContractError as exc:  # not a record the fleet deferred
            log.warning("dead-lettering %s@%d: %s", tp, record.offset, exc)
            await self._dead_letters.publish(record, failure_of(exc), str(exc))
            await self._consumer.commit({tp: record.offset + 1})
            return
        try:
            if not due or not await self._send(target, record):
                return  # stopping: uncommitted records are forwarded by the next owner
        except KafkaError as exc:
            # Refused for good (too large for the lane's topic, a denied topic): the job
            # ends in the dead-letter topic, and the tier's partition moves on.
            log.error("dead-lettering %s@%d: not taken by %s: %r", tp, record.offset, target, exc)
            # Too large for the lane is the request's size (oversized), not a reply's.
            failure = failure_of(
                RetryTooLarge(str(exc)) if isinstance(exc, MessageSizeTooLargeError) else exc
            )
            await self._dead_letters.publish(record, failure, f"{target}: {exc!r}")
        await self._consumer.commit({tp: record.offset + 1})

    async def _send(self, target: str, record: Record) -> bool:
        """Send the deferred job back, again (with the broker wait's backoff) while the broker
        does not take it for a passing reason: a job deferred here is one in flight, and a
        forwarder that gave up would end its worker. A send reported failed may have been
        stored after all: the ledger runs the second copy's request id once. False when
        stopped first; Kafka's error when it will never be taken."""
        tries = 0
        while True:
            try:
                await self._producer.send_and_wait(
                    target, record.value, key=record.key, headers=list(record.headers)
                )
                return True
            except KafkaError as exc:
                if not passing(exc):
                    raise
                if not tries:
                    log.warning("forwarding to %s failed (%r): trying again", target, exc)
                delay = SERVICE_WAIT.backoff_s(min(tries, 5))
                tries += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            if self._stopping.is_set():
                return False

    async def _wait_until_due(self, record: Record) -> bool:
        due_ms = _int_header(record.headers, Header.RETRY_NOT_BEFORE_MS)
        wait_s = due_ms / 1000 - time.time()
        if wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=wait_s)
        return not self._stopping.is_set()
