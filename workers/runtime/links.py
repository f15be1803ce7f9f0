"""The links of the job runner's chain, outermost first; each does one thing.

Traced, CatchUndeliverable, Decode, VerifyTenant (with tenant keys), SkipGoneReplyTopics,
Deadline, Claim (with the ledger),
Cancellation, Metered, RouteFailures, and RunHandler at the end (workers/runtime/runner.py
puts them together). Every failure has a place: a dead letter with its reason, an error
reply, a retry, or (for cancellation and shutdown) a job handed back unfinished.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from contracts.codec import (
    content_type_of,
    decode_chunk,
    decode_request,
    decode_request_head,
    encode,
)
from contracts.control import CancelJob, submission_of
from contracts.errors import ConfigError, ContractError, ErrorCode
from contracts.names import DeadLetterReason, Header
from contracts.replies import EmbedResult, ErrorReply, Final, GenerateResult, ReplyChunk
from producer_sdk.tracing import extract_context
from providers.call_retry import CallRetryPolicy, call_with_retry
from providers.errors import ProviderError
from providers.telemetry import tracing_configured
from workers.dead_letter import DeadLetters
from workers.handlers import JobHandler
from workers.idempotency import (
    AlreadyDone,
    Cancelled,
    CrashedTooOften,
    JobLedger,
    tenant_submission,
)
from workers.metrics import Outcome, WorkerMetrics
from workers.retry import RedeliveryScheduler, retry_count
from workers.runtime.chain import Job, Link
from workers.runtime.publisher import Publisher, TopicProbe
from workers.runtime.records import Record, header
from workers.runtime.reply_stream import ChunkStamper, GoneTopics, ReplyStream
from workers.tenants import unverified

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("ai_job_fleet.workers")

# Redis away for a moment (a restart, a failover) should not end a job: about 15 s of
# retries with backoff before the job is answered provider_down.
LEDGER_RETRY = CallRetryPolicy(max_attempts=6, base_delay_s=0.5, max_delay_s=5.0)


class Outcomes:
    """What several links share: dead letters and error replies, each counted once."""

    def __init__(self, kind: str, dead_letters: DeadLetters, metrics: WorkerMetrics) -> None:
        self.kind = kind
        self.metrics = metrics
        self._dead_letters = dead_letters

    async def dead_letter(
        self, record: Record, code: ErrorCode, reason: DeadLetterReason, detail: str
    ) -> None:
        self.metrics.dead_letters.labels(self.kind, reason.value).inc()
        await self._dead_letters.publish(record, code, reason, detail)

    async def error_reply(self, job: Job, code: ErrorCode, message: str) -> ErrorReply:
        """Send the job's final chunk as an error; the job ends with it."""
        self.metrics.outcome(Outcome.ERROR)
        self.metrics.errors.labels(self.kind, code.value).inc()
        final = job.stamper.error(code, message)
        await job.stream.send(final)
        job.final = final
        return final


class Traced(Link):
    """A consumer span around the job, continuing the producer's trace (when configured)."""

    async def __call__(self, job: Job) -> None:
        if not tracing_configured():
            await self.call_next(job)
            return
        record = job.record
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
            await self.call_next(job)


class CatchUndeliverable(Link):
    """A reply the broker would not take. Asked whether the caller's reply topic still
    exists, the broker says no: the caller went away, so the job is dead-lettered and the
    topic remembered (later jobs for it skip the model). Anything else (a broker restarting,
    a leader moving) is transient: the job is redelivered through a retry tier, and nothing
    of a live caller is dead-lettered."""

    def __init__(
        self,
        outcomes: Outcomes,
        gone: GoneTopics,
        probe: TopicProbe | None,
        retries: RedeliveryScheduler | None,
    ) -> None:
        self._outcomes = outcomes
        self._gone = gone
        self._probe = probe
        self._retries = retries

    async def __call__(self, job: Job) -> None:
        try:
            await self.call_next(job)
        except KafkaError as exc:
            record = job.record
            head = decode_request_head(record.value or b"", header(record, Header.CONTENT_TYPE))
            topic = head.reply_to.topic if head is not None and head.reply_to else None
            exists = await self._probe(topic) if topic and self._probe else False
            if exists is not False and await self._redeliver(job, exc):
                return
            log.warning("replies for %s undeliverable: %s", job.where, exc)
            if topic is not None and exists is False:
                self._gone.mark(topic)
            await self._outcomes.dead_letter(
                record, ErrorCode.INTERNAL, DeadLetterReason.REPLY_UNDELIVERABLE, repr(exc)
            )

    async def _redeliver(self, job: Job, exc: KafkaError) -> bool:
        """Park the job for a later try; False when its retry budget is spent."""
        if self._retries is None or self._retries.exhausted(job.record):
            return False
        log.warning("replies for %s failed for now (%s): redelivering the job", job.where, exc)
        error = ProviderError(ErrorCode.PROVIDER_DOWN, "kafka.reply", repr(exc))
        delay = await self._retries.schedule(job.record, error)
        metrics = self._outcomes.metrics
        metrics.outcome(Outcome.RETRIED)
        metrics.redeliveries.labels(self._outcomes.kind, f"{delay:g}").inc()
        return True


class Decode(Link):
    """Bytes to a typed request and its reply stream; what does not decode is dead-lettered
    (and answered, when its reply address can still be read)."""

    def __init__(self, outcomes: Outcomes, producer: Publisher, max_payload_bytes: int) -> None:
        self._outcomes = outcomes
        self._producer = producer
        self._max_payload_bytes = max_payload_bytes

    async def __call__(self, job: Job) -> None:
        payload = job.record.value or b""
        job.content_type = content_type_of(payload, header(job.record, Header.CONTENT_TYPE))
        try:
            request = decode_request(
                self._outcomes.kind,
                payload,
                content_type=job.content_type,
                max_bytes=self._max_payload_bytes,
            )
        except ContractError as exc:
            await self._reject(job, exc)
            return
        job.request = request
        job.stream = ReplyStream(self._producer, request.reply_to, job.content_type)
        # Each redelivery through a retry tier is the next attempt, ledger or not (with the
        # ledger, Claim numbers every delivery, crash takeovers included).
        attempt = request.attempt + retry_count(job.record.headers)
        job.stamper = ChunkStamper(request.request_id, attempt)
        await self.call_next(job)

    async def _reject(self, job: Job, exc: ContractError) -> None:
        log.warning("dead-lettering %s: %s", job.where, exc)
        self._outcomes.metrics.outcome(Outcome.REJECTED)
        reason = DeadLetterReason(exc.reason.value)
        await self._outcomes.dead_letter(job.record, ErrorCode.INVALID_INPUT, reason, str(exc))
        head = decode_request_head(job.record.value or b"", job.content_type)
        if head is None or not head.request_id or head.reply_to is None:
            return
        stamper = ChunkStamper(head.request_id, head.attempt)
        stream = ReplyStream(self._producer, head.reply_to, job.content_type)
        await stream.send(stamper.error(ErrorCode.INVALID_INPUT, str(exc)))
        await stream.flush()


class VerifyTenant(Link):
    """With tenant keys configured, a request runs only for the tenant whose key signed its
    bytes; a forged or unsigned one is answered `auth` and dead-lettered, and reads nothing."""

    def __init__(self, outcomes: Outcomes, keys: dict[str, bytes]) -> None:
        self._outcomes = outcomes
        self._keys = keys

    async def __call__(self, job: Job) -> None:
        why = unverified(self._keys, job.request.tenant, job.record)
        if why is None:
            await self.call_next(job)
            return
        log.warning("refusing %s: %s", job.where, why)
        reason = DeadLetterReason.TENANT_UNVERIFIED
        await self._outcomes.dead_letter(job.record, ErrorCode.AUTH, reason, why)
        await self._outcomes.error_reply(job, ErrorCode.AUTH, why)
        await job.stream.flush()


class SkipGoneReplyTopics(Link):
    """A job for a caller whose reply topic could not be reached lately is not run."""

    def __init__(self, outcomes: Outcomes, gone: GoneTopics) -> None:
        self._outcomes = outcomes
        self._gone = gone

    async def __call__(self, job: Job) -> None:
        reply_to = job.request.reply_to
        if reply_to is not None and reply_to.topic in self._gone:
            detail = f"{reply_to.topic} could not be reached lately"
            reason = DeadLetterReason.REPLY_TOPIC_GONE
            await self._outcomes.dead_letter(job.record, ErrorCode.INTERNAL, reason, detail)
            return
        await self.call_next(job)


class Deadline(Link):
    """A job whose deadline passed before it started is answered `timeout`, not run."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics

    async def __call__(self, job: Job) -> None:
        deadline_ms = job.request.deadline_ms
        if deadline_ms is not None and deadline_ms < time.time() * 1000:
            self._metrics.outcome(Outcome.EXPIRED)
            message = "the request's deadline passed before a worker started it"
            await job.stream.send(job.stamper.error(ErrorCode.TIMEOUT, message))
            await job.stream.flush()
            return
        await self.call_next(job)


class Claim(Link):
    """Once-only execution through the ledger: a job done before is replayed, one cancelled
    before it started is skipped, a poison job is ended; otherwise the job runs holding the
    lock, and its final reply is stored (or the job released for the next delivery)."""

    def __init__(
        self, outcomes: Outcomes, ledger: JobLedger, retry: CallRetryPolicy = LEDGER_RETRY
    ) -> None:
        self._outcomes = outcomes
        self._ledger = ledger
        self._retry = retry

    async def __call__(self, job: Job) -> None:
        request_id = job.request.request_id
        submission = tenant_submission(job.request.tenant, submission_of(job.request))
        try:
            claim = await call_with_retry(
                lambda: self._ledger.claim(request_id, submission), self._retry, name="ledger.claim"
            )
        except ProviderError as exc:
            await self._unavailable(job, exc)
            return
        if isinstance(claim, AlreadyDone):
            await self._replay(job, claim.final_reply)
            return
        if isinstance(claim, Cancelled):
            self._outcomes.metrics.outcome(Outcome.SKIPPED_CANCELLED)  # its caller is gone
            return
        job.stamper = ChunkStamper(request_id, claim.attempt)
        if isinstance(claim, CrashedTooOften):
            await self._give_up(job, claim)
            return
        finished = False
        try:
            async with self._ledger.held(request_id):
                await self.call_next(job)
            if job.final is not None:
                await self._store_final(request_id, job.final)
                finished = True
        finally:
            if not finished:
                await self._release(request_id)

    async def _unavailable(self, job: Job, exc: ProviderError) -> None:
        """Redis stayed away for the whole retry budget: the job ends here, answered and
        dead-lettered, rather than waiting uncommitted for a Redis that may not come back."""
        log.error("job %s: the ledger is unavailable: %s", job.request.request_id, exc)
        reason = DeadLetterReason.LEDGER_UNAVAILABLE
        await self._outcomes.dead_letter(job.record, ErrorCode.PROVIDER_DOWN, reason, exc.detail)
        message = f"the fleet's job ledger is unavailable ({exc.detail}); try again"
        await self._outcomes.error_reply(job, ErrorCode.PROVIDER_DOWN, message)
        await job.stream.flush()

    async def _store_final(self, request_id: str, final: Final) -> None:
        try:
            await call_with_retry(
                lambda: self._ledger.finish(request_id, encode(final)),
                self._retry,
                name="ledger.finish",
            )
        except ProviderError as exc:
            # The caller has its answer; only a redelivery (a rebalance before the commit)
            # would run the job again.
            log.error("job %s answered, but its done record was not stored: %s", request_id, exc)

    async def _release(self, request_id: str) -> None:
        try:
            await self._ledger.release(request_id)
        except ProviderError as exc:  # the lock expires by itself
            log.warning("job %s: its lock could not be released: %s", request_id, exc)

    async def _replay(self, job: Job, stored: bytes) -> None:
        """Send the stored final reply again, numbered as a fresh stream (seq 0)."""
        chunk = decode_chunk(stored)
        self._outcomes.metrics.outcome(Outcome.REPLAYED)
        await job.stream.send(msgspec.structs.replace(chunk, seq=0))
        await job.stream.flush()

    async def _give_up(self, job: Job, claim: CrashedTooOften) -> None:
        """A poison job: its workers died running it, again and again. End it here, so that
        it cannot crash-loop the fleet; later deliveries replay this error."""
        message = (
            f"the {self._outcomes.kind} worker died {claim.crashes} times while running "
            "this job; it is not run again"
        )
        log.error("job %s: %s", job.request.request_id, message)
        reason = DeadLetterReason.WORKER_CRASHED
        await self._outcomes.dead_letter(job.record, ErrorCode.INTERNAL, reason, message)
        await self._outcomes.error_reply(job, ErrorCode.INTERNAL, message)
        await job.stream.flush()
        await self._ledger.finish(job.request.request_id, encode(job.final))


class Cancellation(Link):
    """Knows which job runs in which task, so a caller's cancel stops it; a cancelled job
    sends nothing more and is recorded as cancelled (its lock released by Claim)."""

    def __init__(self, metrics: WorkerMetrics, ledger: JobLedger | None) -> None:
        self._metrics = metrics
        self._ledger = ledger
        # request id -> its job's task and tenant
        self._running: dict[str, tuple[asyncio.Task[Any], str]] = {}
        self._cancelled: set[str] = set()

    async def __call__(self, job: Job) -> None:
        request_id = job.request.request_id
        task = asyncio.current_task()
        assert task is not None
        self._running[request_id] = (task, job.request.tenant)
        try:
            await self.call_next(job)
        except asyncio.CancelledError:
            if request_id not in self._cancelled:
                raise  # shutdown or rebalance: handed back, not finished
            task.uncancel()
            # Nobody listens any more: nothing is sent, and the lock is released.
            job.final = None
            self._metrics.outcome(Outcome.CANCELLED)
            if self._ledger is not None:
                try:
                    submission = submission_of(job.request)
                    await self._ledger.cancel(
                        request_id, tenant_submission(job.request.tenant, submission)
                    )
                except ProviderError as exc:  # a later redelivery would run it: say so
                    log.warning("job %s: its cancel was not recorded: %s", request_id, exc)
        finally:
            self._running.pop(request_id, None)
            self._cancelled.discard(request_id)

    async def cancel(self, message: CancelJob) -> None:
        """The caller gave up: stop the job if it runs here, else make sure it never starts.
        Only the job's own tenant can: a cancel naming another tenant matches nothing."""
        running = self._running.get(message.request_id)
        if running is not None:
            task, tenant = running
            if tenant == message.tenant:
                self._cancelled.add(message.request_id)
                task.cancel()
        elif self._ledger is not None:
            submission = tenant_submission(message.tenant, message.submission)
            await self._ledger.cancel(message.request_id, submission)


class Metered(Link):
    """Jobs in flight, and the duration of those that ended with a final reply."""

    def __init__(self, metrics: WorkerMetrics, kind: str) -> None:
        # Label lookups take a lock and a dict probe: done once, not per job.
        self._in_flight = metrics.in_flight.labels(kind)
        self._duration = metrics.duration.labels(kind)

    async def __call__(self, job: Job) -> None:
        job.started = time.perf_counter()
        self._in_flight.inc()
        try:
            await self.call_next(job)
        finally:
            self._in_flight.dec()
        if job.final is not None:
            self._duration.observe(time.perf_counter() - job.started)


class RouteFailures(Link):
    """Where a failed job goes: a retryable provider error to a delayed retry (or, past the
    budget, to the dead letters and the caller); any other failure to an error reply."""

    def __init__(self, outcomes: Outcomes, retries: RedeliveryScheduler | None) -> None:
        self._outcomes = outcomes
        self._retries = retries

    async def __call__(self, job: Job) -> None:
        outcomes = self._outcomes
        try:
            await self.call_next(job)
        except ProviderError as exc:
            if exc.retryable and self._retries is not None:
                if not self._retries.exhausted(job.record):
                    delay = await self._retries.schedule(job.record, exc)
                    outcomes.metrics.outcome(Outcome.RETRIED)
                    outcomes.metrics.redeliveries.labels(outcomes.kind, f"{delay:g}").inc()
                    job.final = None
                    await job.stream.flush()
                    return
                reason = DeadLetterReason.RETRIES_EXHAUSTED
                detail = f"{exc.code}: {exc.detail}"
                await outcomes.dead_letter(job.record, exc.code, reason, detail)
            log.warning("job %s failed: %s", job.request.request_id, exc)
            await outcomes.error_reply(job, exc.code, exc.detail)
        except ConfigError as exc:
            await outcomes.error_reply(job, ErrorCode.INVALID_INPUT, str(exc))
        except MessageSizeTooLargeError as exc:
            # The result does not fit one Kafka message: the caller is there, and gets a small
            # typed error at once instead of waiting for its deadline.
            log.warning("job %s: its reply is too large: %s", job.request.request_id, exc)
            reason = DeadLetterReason.REPLY_TOO_LARGE
            await outcomes.dead_letter(job.record, ErrorCode.INVALID_INPUT, reason, str(exc))
            message = (
                f"the {outcomes.kind} result is too large for one reply message ({exc}); "
                "ask for less per request (fewer texts, fewer tokens)"
            )
            job.stamper.resume_at(job.stream.sent)  # the refused chunk's number
            await outcomes.error_reply(job, ErrorCode.INVALID_INPUT, message)
        except KafkaError:
            raise  # the reply could not be sent: CatchUndeliverable's, not the handler's fault
        except Exception as exc:
            log.exception("job %s crashed in the %s handler", job.request.request_id, outcomes.kind)
            reason = DeadLetterReason.HANDLER_FAILED
            await outcomes.dead_letter(job.record, ErrorCode.INTERNAL, reason, repr(exc))
            message = f"the {outcomes.kind} worker failed on this job ({type(exc).__name__})"
            await outcomes.error_reply(job, ErrorCode.INTERNAL, message)
        await job.stream.flush()


class RunHandler:
    """The end of the chain: the handler turns the request into chunks, sent as they come."""

    def __init__(self, handler: JobHandler[Any], metrics: WorkerMetrics, kind: str) -> None:
        self._handler = handler
        self._metrics = metrics
        self._kind = kind
        self._first_chunk = metrics.first_chunk.labels(kind)
        self._input_tokens = metrics.tokens.labels(kind, "input")
        self._output_tokens = metrics.tokens.labels(kind, "output")

    async def __call__(self, job: Job) -> None:
        last: ReplyChunk | None = None
        async for chunk in self._handler.handle(job.request, job.stamper):
            if last is None:
                self._first_chunk.observe(time.perf_counter() - job.started)
            await job.stream.send(chunk)
            last = chunk
        if not isinstance(last, Final):
            raise RuntimeError(f"the {self._kind} handler ended without a final chunk")
        self._metrics.outcome(Outcome.OK)
        if isinstance(last, GenerateResult | EmbedResult):
            self._input_tokens.inc(last.usage.input_tokens)
            self._output_tokens.inc(last.usage.output_tokens)
        job.final = last
