"""What several links share: dead letters, error replies and redeliveries, each counted
once. What a failure comes to is the failure table's to say (``workers/failure_table.py``)."""

from __future__ import annotations

from contracts.errors import ContractError, ErrorCode
from contracts.replies import ErrorReply
from providers.errors import ProviderError
from transport.records import Record
from workers.dead_letter import DeadLetters
from workers.failure_table import Failure, RetryTooLarge, failure_of
from workers.metrics import Outcome, WorkerMetrics
from workers.retry import RedeliveryScheduler, attempt_floor
from workers.runtime.links.chain import Job


class Outcomes:
    """What several links share: dead letters, error replies and redeliveries, each counted
    once."""

    def __init__(
        self,
        kind: str,
        dead_letters: DeadLetters,
        metrics: WorkerMetrics,
        retries: RedeliveryScheduler | None,
    ) -> None:
        self.kind = kind
        self.metrics = metrics
        self._dead_letters = dead_letters
        self._retries = retries

    async def dead_letter(self, record: Record, failure: Failure, detail: str) -> None:
        """Dead-letter the record with the failure's reason (nothing, for a failure that
        keeps no dead letter); ``DeadLetters`` counts it."""
        await self._dead_letters.publish(record, failure, detail)

    async def redeliver(self, job: Job, failure: Failure, exc: Exception) -> bool:
        """Park the job's record on a retry tier for a later try, as the next attempt, to come
        back on the lane it came from: when the failure is one to redeliver and the job's
        retry budget lasts. False when the job ends here instead."""
        retries = self._retries
        if not failure.redeliver or retries is None:
            return False
        record = job.record
        try:
            if retries.exhausted(record):
                return False
            if job.stamper is not None:
                next_attempt = job.stamper.attempt + 1
            else:  # not decoded yet: what the record itself says
                next_attempt = attempt_floor(0, record.headers) + 1
        except ContractError:
            # Retry headers the fleet did not write (admission dead-letters such a record,
            # and this is its dead letter failing for now): no retry can count on them, so
            # the job ends here, not in an error out of the failure handling.
            return False
        # What the retry headers say of the failure: a provider's own error as it is.
        error = exc if isinstance(exc, ProviderError) else _as_error(failure, exc)
        delay = await retries.schedule(record, error, next_attempt=next_attempt, lane=job.lane)
        self.metrics.outcome(Outcome.RETRIED)
        self.metrics.redeliveries.labels(self.kind, f"{delay:g}").inc()
        return True

    async def settle(self, job: Job, exc: Exception, detail: str, message: str) -> bool:
        """End the job as the failure table says of ``exc``: redeliver it (True), or
        dead-letter it (saying ``detail``) and answer the caller (saying ``message``); a job
        too large to park for a retry is answered that, with its size."""
        failure = failure_of(exc)
        try:
            if await self.redeliver(job, failure, exc):
                job.final = None  # nothing to store: the job runs again
                return True
        except RetryTooLarge as too_large:  # no later try would fit either: it ends here
            failure = failure_of(too_large)
            detail = message = str(too_large)
        await self.dead_letter(job.record, failure, detail)
        await self.error_reply(job, failure.code, message)
        return False

    async def error_reply(self, job: Job, code: ErrorCode, message: str) -> ErrorReply:
        """Send the job's final chunk as an error; the job ends with it."""
        self.metrics.outcome(Outcome.ERROR)
        self.metrics.errors.labels(self.kind, code.value).inc()
        final = job.stamper.error(code, message)
        await job.stream.send(final)
        job.final = final
        return final


def _as_error(failure: Failure, exc: Exception) -> ProviderError:
    return ProviderError(failure.code, type(exc).__name__, repr(exc))
