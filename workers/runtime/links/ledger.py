"""The links of once-only execution and cancellation: the ledger's claim around the job, and
the caller's cancel stopping it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec

from contracts.codec import (
    decode_chunk,
    encode,
)
from contracts.control import CancelJob, submission_of
from contracts.generate import GenerateRequest
from contracts.replies import ErrorReply, Final, GenerateResult, ReplyChunk
from providers.call_retry import CallRetryPolicy, call_with_retry
from providers.errors import ProviderError
from workers.failure_table import WORKER_CRASHED
from workers.handlers.reply_stream import ChunkStamper
from workers.idempotency import (
    AlreadyDone,
    Cancelled,
    CrashedTooOften,
    JobLedger,
    LedgerUnavailable,
    job_ref,
    tenant_submission,
)
from workers.metrics import Outcome, WorkerMetrics
from workers.runtime.links.chain import Job, Link
from workers.runtime.links.outcomes import Outcomes

log = logging.getLogger(__name__)


# Redis away for a moment (a restart, a failover) should not end a job: about 15 s of
# retries with backoff before the job is answered provider_down.
LEDGER_RETRY = CallRetryPolicy(max_attempts=6, base_delay_s=0.5, max_delay_s=5.0)


def keeps_answer(job: Job, final: Final) -> bool:
    """Whether the ledger stores this final reply for a repeat of the request id to replay.

    Not an answer on the batch lane: a batch's rows are counted once by its output topic's
    tally, so a redelivered row may run again, and the ledger would otherwise hold every
    row's answer (an embed request's 256 vectors: 393 kB) for ``result_ttl_s`` in a Redis
    that does not evict (docs/decisions/0026-batch-answers-not-kept.md). Errors are kept on
    every lane: they are small, and ``fleet dlq replay`` reopens them."""
    return job.lane != "batch" or isinstance(final, ErrorReply)


class Claim(Link):
    """Once-only execution through the ledger: a job done before is replayed, one cancelled
    before it started is skipped, a poison job is ended; otherwise the job runs holding the
    lock, and its final reply is stored before it is sent (``StoreFirst``), or the job
    released for the next delivery, which is also where a batch-lane answer goes
    (``keeps_answer``). Deadline comes inside it: a job answered before is replayed here,
    whatever its deadline."""

    def __init__(
        self, outcomes: Outcomes, ledger: JobLedger, retry: CallRetryPolicy = LEDGER_RETRY
    ) -> None:
        self._outcomes = outcomes
        self._ledger = ledger
        self._retry = retry

    async def __call__(self, job: Job) -> None:
        request_id = job.request.request_id
        ref = job_ref(self._outcomes.kind, job.request.tenant, request_id)
        submission = tenant_submission(job.request.tenant, submission_of(job.request))
        try:
            claim = await call_with_retry(
                lambda: self._ledger.claim(ref, submission, floor=job.stamper.attempt),
                self._retry,
                name="ledger.claim",
            )
        except LedgerUnavailable as exc:
            await self._unavailable(job, exc)
            return
        if isinstance(claim, AlreadyDone):
            await self._replay(job, ref, claim.final_reply)
            return
        if isinstance(claim, Cancelled):
            self._outcomes.metrics.outcome(Outcome.SKIPPED_CANCELLED)  # its caller is gone
            return
        job.stamper = ChunkStamper(request_id, claim.attempt)
        if isinstance(claim, CrashedTooOften):
            await self._give_up(job, ref, claim)
            return
        store = StoreFirst(job, ref, self._ledger, self._retry)
        job.stream.keep_finals(store)
        try:
            async with self._ledger.held(ref):
                await self.call_next(job)
        finally:
            if not store.stored:  # storing let go of the job too
                await self._release(ref)

    async def _unavailable(self, job: Job, exc: LedgerUnavailable) -> None:
        """Redis stayed away for the whole retry budget: the job ends as the failure table
        says."""
        log.error("job %s: the ledger is unavailable: %s", job.request.request_id, exc)
        message = f"the fleet's job ledger is unavailable ({exc.detail}); try again"
        await self._outcomes.settle(job, exc, exc.detail, message)
        await job.stream.flush()

    async def _release(self, ref: str) -> None:
        try:
            await self._ledger.release(ref)
        except ProviderError as exc:  # the lock expires by itself
            log.warning("job %s: its lock could not be released: %s", ref, exc)

    async def _replay(self, job: Job, ref: str, stored: bytes) -> None:
        """Send the stored final again. A final that was the first chunk of its attempt
        goes as it was stored. One that came after chunks of its attempt goes as a stream
        of its own under a new attempt: the caller may have followed those chunks but not
        got the final (the broker went away at its send), and would take it, numbered within
        that attempt, as a duplicate."""
        first = decode_chunk(stored)
        self._outcomes.metrics.outcome(Outcome.REPLAYED)
        if first.seq == 0:
            await job.stream.send(first)
        else:
            for chunk in as_new_stream(first, job):
                await job.stream.send(chunk)
        await job.stream.flush()

    async def _give_up(self, job: Job, ref: str, claim: CrashedTooOften) -> None:
        """A poison job: its workers died running it, again and again. End it here, so that
        it cannot crash-loop the fleet; later deliveries replay this error (stored before
        it is sent, as every final under Claim)."""
        message = (
            f"the {self._outcomes.kind} worker died {claim.crashes} times while running "
            "this job; it is not run again"
        )
        log.error("job %s: %s", job.request.request_id, message)
        await self._outcomes.dead_letter(job.record, WORKER_CRASHED, message)
        store = StoreFirst(job, ref, self._ledger, self._retry, ends_here=True)
        job.stream.keep_finals(store)
        try:
            await self._outcomes.error_reply(job, WORKER_CRASHED.code, message)
            await job.stream.flush()
        finally:
            if not store.stored:  # the claim holds the lock
                await self._release(ref)


class StoreFirst:
    """The final reply of a job that runs under Claim, on its way to the caller: stored in
    the ledger before it is sent, so a worker killed at the send (or before the send is
    acknowledged) leaves an answer for the redelivery to replay, not a job to run again.
    When another run of the job stored its final first (this run's lock lapsed, say while
    Redis restarted, and another worker took the job over), that final is sent instead, as
    a restarted stream: the caller gets one answer, however many runs there were
    (docs/decisions/0028-final-stored-before-sent.md)."""

    __slots__ = ("_ends_here", "_job", "_ledger", "_ref", "_retry", "stored")

    def __init__(
        self,
        job: Job,
        ref: str,
        ledger: JobLedger,
        retry: CallRetryPolicy,
        *,
        ends_here: bool = False,  # the job is ended before its handler (a poison job)
    ) -> None:
        self._job = job
        self._ref = ref
        self._ledger = ledger
        self._retry = retry
        self._ends_here = ends_here
        self.stored = False  # the final is in the ledger, and the job's lock let go

    async def __call__(self, final: Final) -> list[ReplyChunk] | None:
        """What to send instead of ``final``: None for ``final`` itself."""
        job = self._job
        # A final sent before the handler started (the deadline's timeout) says the job was
        # not run: not kept, so that a resubmission with a later deadline runs. A poison
        # job's error ends it for good: kept.
        if not (job.started or self._ends_here) or not keeps_answer(job, final):
            return None
        encoded = encode(final)
        try:
            earlier = await call_with_retry(
                lambda: self._ledger.finish(self._ref, encoded),
                self._retry,
                name="ledger.finish",
            )
        except ProviderError as exc:
            # Redis stayed away: the answer still goes out. Only a redelivery (a kill or a
            # rebalance before the commit) would run the job again.
            log.error("job %s answered, but its final was not stored: %s", self._ref, exc)
            return None
        self.stored = True
        if earlier is None or earlier == encoded:  # stored now (or by a retried call)
            return None
        first = decode_chunk(earlier)
        if not isinstance(first, Final):
            return None
        log.warning("job %s ran twice: the final stored first is sent", self._ref)
        return as_new_stream(first, job)


def as_new_stream(first: ReplyChunk, job: Job) -> list[ReplyChunk]:
    """``first`` (a final the ledger holds) as a stream of its own, under an attempt above
    the one that made it and the delivery's own: a caller who followed another attempt's
    chunks starts over, and one who follows the text sees it as one delta before the final,
    as every stream has it. No run takes a new attempt once a final is stored (its claims
    replay it), so the number is no other stream's; and it is not counted as a start."""
    stamper = ChunkStamper(first.request_id, max(job.stamper.attempt, first.attempt) + 1)
    chunks: list[ReplyChunk] = []
    follows_text = isinstance(job.request, GenerateRequest) and job.request.stream
    if follows_text and isinstance(first, GenerateResult) and first.text:
        chunks.append(stamper.delta(first.text))
    chunks.append(msgspec.structs.replace(first, **stamper.head()))
    return chunks


class Cancellation(Link):
    """Knows which job runs in which task, so a caller's cancel stops it; a cancelled job
    sends nothing more and is recorded as cancelled (its lock released by Claim)."""

    def __init__(self, kind: str, metrics: WorkerMetrics, ledger: JobLedger | None) -> None:
        self._kind = kind
        self._metrics = metrics
        self._ledger = ledger
        # job_ref (kind, tenant, request id) -> its job's task
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._cancelled: set[str] = set()

    async def __call__(self, job: Job) -> None:
        request_id = job.request.request_id
        ref = job_ref(self._kind, job.request.tenant, request_id)
        task = asyncio.current_task()
        assert task is not None
        self._running[ref] = task
        try:
            await self.call_next(job)
        except asyncio.CancelledError:
            if ref not in self._cancelled:
                raise  # shutdown or rebalance: handed back, not finished
            task.uncancel()
            # Nobody listens any more: nothing is sent, and the lock is released.
            job.final = None
            self._metrics.outcome(Outcome.CANCELLED)
            if self._ledger is not None:
                try:
                    submission = submission_of(job.request)
                    await self._ledger.cancel(
                        ref, tenant_submission(job.request.tenant, submission)
                    )
                except ProviderError as exc:  # a later redelivery would run it: say so
                    log.warning("job %s: its cancel was not recorded: %s", request_id, exc)
        finally:
            self._running.pop(ref, None)
            self._cancelled.discard(ref)

    async def cancel(self, message: CancelJob) -> None:
        """The caller gave up: stop the job if it runs here, else make sure it never starts.
        Only the job's own tenant can: a cancel naming another tenant matches nothing."""
        ref = job_ref(self._kind, message.tenant, message.request_id)
        task = self._running.get(ref)
        if task is not None:
            self._cancelled.add(ref)
            task.cancel()
        elif self._ledger is not None:
            submission = tenant_submission(message.tenant, message.submission)
            await self._ledger.cancel(ref, submission)
