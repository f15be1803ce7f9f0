"""Runs one Kafka record as a job: decode, claim, handle, reply; every failure has a place.

Bad input goes to the dead-letter topic with the reason (and an error reply when the reply
address can be read); retryable provider failures go to a delayed retry topic; other
failures become error replies. Nothing here raises except cancellation and a broker that
cannot take the dead letter, so one bad job never stops the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import msgspec
from aiokafka.errors import KafkaError
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from contracts.codec import (
    AnyRequest,
    content_type_of,
    decode_chunk,
    decode_request,
    decode_request_head,
    encode,
)
from contracts.control import CancelJob, submission_of
from contracts.errors import ConfigError, ContractError, ErrorCode
from contracts.names import DeadLetterReason, Header
from contracts.replies import Final, ReplyChunk
from producer_sdk.tracing import extract_context
from providers.errors import ProviderError
from providers.telemetry import tracing_configured
from workers.dead_letter import DeadLetters
from workers.handlers import JobHandler
from workers.idempotency import AlreadyDone, Cancelled, CrashedTooOften, JobLedger
from workers.metrics import Outcome, WorkerMetrics
from workers.retry import RedeliveryScheduler
from workers.runtime.publisher import Publisher
from workers.runtime.records import Record, header
from workers.runtime.reply_stream import ChunkStamper, GoneTopics, ReplyStream

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("ai_job_fleet.workers")


class JobRunner:
    def __init__(
        self,
        *,
        kind: str,
        handler: JobHandler[Any],
        producer: Publisher,
        dead_letters: DeadLetters,
        max_payload_bytes: int,
        metrics: WorkerMetrics,
        ledger: JobLedger | None = None,
        retries: RedeliveryScheduler | None = None,
    ) -> None:
        self._kind = kind
        self._handler = handler
        self._producer = producer
        self._dead_letters = dead_letters
        self._max_payload_bytes = max_payload_bytes
        self._metrics = metrics
        self._ledger = ledger
        self._retries = retries
        # Label lookups take a lock and a dict probe: done once, not per job.
        self._in_flight = metrics.in_flight.labels(kind)
        self._gone = GoneTopics()
        self._running: dict[str, asyncio.Task[Any]] = {}  # request id -> its job's task
        self._cancelled: set[str] = set()
        self._duration = metrics.duration.labels(kind)
        self._first_chunk = metrics.first_chunk.labels(kind)

    async def run(self, record: Record) -> None:
        if not tracing_configured():
            await self._run_logged(record)
            return
        attributes = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
        }
        with _tracer.start_as_current_span(
            f"process {record.topic}",
            context=extract_context(record.headers),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ):
            await self._run_logged(record)

    async def _run_logged(self, record: Record) -> None:
        try:
            await self._run(record)
        except KafkaError as exc:
            # Typically the reply topic is gone (its client went away): keep the job.
            log.warning("replies for %s undeliverable: %s", _where(record), exc)
            head = decode_request_head(record.value or b"", header(record, Header.CONTENT_TYPE))
            if head is not None and head.reply_to is not None:
                self._gone.mark(head.reply_to.topic)
            await self._dead_letter(
                record, ErrorCode.INTERNAL, DeadLetterReason.REPLY_UNDELIVERABLE, repr(exc)
            )

    async def _run(self, record: Record) -> None:
        payload = record.value or b""
        content_type = content_type_of(payload, header(record, Header.CONTENT_TYPE))
        try:
            request = decode_request(
                self._kind, payload, content_type=content_type, max_bytes=self._max_payload_bytes
            )
        except ContractError as exc:
            await self._reject(record, content_type, exc)
            return
        if request.reply_to is not None and request.reply_to.topic in self._gone:
            detail = f"{request.reply_to.topic} could not be reached lately"
            reason = DeadLetterReason.REPLY_TOPIC_GONE
            await self._dead_letter(record, ErrorCode.INTERNAL, reason, detail)
            return
        stream = ReplyStream(self._producer, request.reply_to, content_type)
        if request.deadline_ms is not None and request.deadline_ms < time.time() * 1000:
            self._metrics.outcome(Outcome.EXPIRED)
            stamper = ChunkStamper(request.request_id, request.attempt)
            message = "the request's deadline passed before a worker started it"
            await stream.send(stamper.error(ErrorCode.TIMEOUT, message))
            await stream.flush()
            return
        attempt = request.attempt
        if self._ledger is not None:
            claim = await self._ledger.claim(request.request_id, submission_of(request))
            if isinstance(claim, AlreadyDone):
                await self._replay(claim.final_reply, stream)
                return
            if isinstance(claim, Cancelled):
                self._metrics.outcome(Outcome.SKIPPED_CANCELLED)  # its caller is gone
                return
            if isinstance(claim, CrashedTooOften):
                await self._give_up_crashed(record, request, claim, stream)
                return
            attempt = claim.attempt
        await self._execute(record, request, ChunkStamper(request.request_id, attempt), stream)

    async def _execute(
        self, record: Record, request: AnyRequest, stamper: ChunkStamper, stream: ReplyStream
    ) -> None:
        request_id = request.request_id
        finished = False
        started = time.perf_counter()
        self._in_flight.inc()
        task = asyncio.current_task()
        assert task is not None
        self._running[request_id] = task
        try:
            hold = self._ledger.held(request_id) if self._ledger else contextlib.nullcontext()
            async with hold:
                try:
                    final = await self._reply(record, request, stamper, stream, started)
                    await stream.flush()
                except asyncio.CancelledError:
                    if request_id not in self._cancelled:
                        raise  # shutdown or rebalance: handed back, not finished
                    task.uncancel()
                    # Nobody listens any more: nothing is sent, and the lock is released.
                    self._metrics.outcome(Outcome.CANCELLED)
                    if self._ledger is not None:
                        await self._ledger.cancel(request_id, submission_of(request))
                    return
            if final is not None:
                if self._ledger is not None:
                    await self._ledger.finish(request_id, encode(final))
                finished = True
                self._duration.observe(time.perf_counter() - started)
        finally:
            self._in_flight.dec()
            self._running.pop(request_id, None)
            self._cancelled.discard(request_id)
            if not finished and self._ledger is not None:
                await self._ledger.release(request_id)

    async def _give_up_crashed(
        self, record: Record, request: AnyRequest, claim: CrashedTooOften, stream: ReplyStream
    ) -> None:
        """A poison job: its workers died running it, again and again. End it here, so that
        it cannot crash-loop the fleet; later deliveries replay this error."""
        assert self._ledger is not None
        message = (
            f"the {self._kind} worker died {claim.crashes} times while running this job; "
            "it is not run again"
        )
        log.error("job %s: %s", request.request_id, message)
        await self._dead_letter(
            record, ErrorCode.INTERNAL, DeadLetterReason.WORKER_CRASHED, message
        )
        stamper = ChunkStamper(request.request_id, claim.attempt)
        final = await self._fail(stamper, stream, ErrorCode.INTERNAL, message)
        await stream.flush()
        await self._ledger.finish(request.request_id, encode(final))

    async def cancel(self, message: CancelJob) -> None:
        """The caller gave up: stop the job if it runs here, else make sure it never starts."""
        task = self._running.get(message.request_id)
        if task is not None:
            self._cancelled.add(message.request_id)
            task.cancel()
        elif self._ledger is not None:
            await self._ledger.cancel(message.request_id, message.submission)

    async def _reply(
        self,
        record: Record,
        request: AnyRequest,
        stamper: ChunkStamper,
        stream: ReplyStream,
        started: float,
    ) -> Final | None:
        """Send the job's chunks; the Final sent, or None when a retry was scheduled."""
        try:
            last: ReplyChunk | None = None
            async for chunk in self._handler.handle(request, stamper):
                if last is None:
                    elapsed = time.perf_counter() - started
                    self._first_chunk.observe(elapsed)
                await stream.send(chunk)
                last = chunk
            if not isinstance(last, Final):
                raise RuntimeError(f"the {self._kind} handler ended without a final chunk")
            self._metrics.outcome(Outcome.OK)
            return last
        except ProviderError as exc:
            if exc.retryable and self._retries is not None:
                if not self._retries.exhausted(record):
                    delay = await self._retries.schedule(record, exc)
                    self._metrics.outcome(Outcome.RETRIED)
                    self._metrics.redeliveries.labels(self._kind, f"{delay:g}").inc()
                    return None
                reason = DeadLetterReason.RETRIES_EXHAUSTED
                await self._dead_letter(record, exc.code, reason, f"{exc.code}: {exc.detail}")
            log.warning("job %s failed: %s", request.request_id, exc)
            return await self._fail(stamper, stream, exc.code, exc.detail)
        except ConfigError as exc:
            return await self._fail(stamper, stream, ErrorCode.INVALID_INPUT, str(exc))
        except KafkaError:
            raise  # the reply could not be sent: handled in run(), not the handler's fault
        except Exception as exc:
            log.exception("job %s crashed in the %s handler", request.request_id, self._kind)
            reason = DeadLetterReason.HANDLER_FAILED
            await self._dead_letter(record, ErrorCode.INTERNAL, reason, repr(exc))
            message = f"the {self._kind} worker failed on this job ({type(exc).__name__})"
            return await self._fail(stamper, stream, ErrorCode.INTERNAL, message)

    async def _fail(
        self, stamper: ChunkStamper, stream: ReplyStream, code: ErrorCode, message: str
    ) -> Final:
        self._metrics.outcome(Outcome.ERROR)
        self._metrics.errors.labels(self._kind, code.value).inc()
        final = stamper.error(code, message)
        await stream.send(final)
        return final

    async def _replay(self, stored: bytes, stream: ReplyStream) -> None:
        """Send the stored final reply again, numbered as a fresh stream (seq 0)."""
        chunk = decode_chunk(stored)
        self._metrics.outcome(Outcome.REPLAYED)
        await stream.send(msgspec.structs.replace(chunk, seq=0))
        await stream.flush()

    async def _reject(self, record: Record, content_type: str, exc: ContractError) -> None:
        log.warning("dead-lettering %s: %s", _where(record), exc)
        self._metrics.outcome(Outcome.REJECTED)
        reason = DeadLetterReason(exc.reason.value)
        await self._dead_letter(record, ErrorCode.INVALID_INPUT, reason, str(exc))
        head = decode_request_head(record.value or b"", content_type)
        if head is None or not head.request_id or head.reply_to is None:
            return
        stamper = ChunkStamper(head.request_id, head.attempt)
        stream = ReplyStream(self._producer, head.reply_to, content_type)
        await stream.send(stamper.error(ErrorCode.INVALID_INPUT, str(exc)))
        await stream.flush()

    async def _dead_letter(
        self, record: Record, code: ErrorCode, reason: DeadLetterReason, detail: str
    ) -> None:
        self._metrics.dead_letters.labels(self._kind, reason.value).inc()
        await self._dead_letters.publish(record, code, reason, detail)


def _where(record: Record) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"
