"""What several links share: dead letters, error replies and redeliveries, each counted
once."""

from __future__ import annotations

from contracts.errors import ErrorCode
from contracts.names import DeadLetterReason
from contracts.replies import ErrorReply
from providers.errors import ProviderError
from transport.records import Record
from workers.dead_letter import DeadLetters
from workers.metrics import Outcome, WorkerMetrics
from workers.retry import RedeliveryScheduler, attempt_floor
from workers.runtime.links.chain import Job


class Outcomes:
    """What several links share: dead letters, error replies and redeliveries, each counted
    once."""

    def __init__(self, kind: str, dead_letters: DeadLetters, metrics: WorkerMetrics) -> None:
        self.kind = kind
        self.metrics = metrics
        self._dead_letters = dead_letters

    async def dead_letter(
        self, record: Record, code: ErrorCode, reason: DeadLetterReason, detail: str
    ) -> None:
        self.metrics.dead_letters.labels(self.kind, reason.value).inc()
        await self._dead_letters.publish(record, code, reason, detail)

    async def redeliver(self, retries: RedeliveryScheduler, job: Job, error: ProviderError) -> None:
        """Park the job's record on a retry tier for a later try, as the next attempt, to come
        back on the lane it came from."""
        record = job.record
        if job.stamper is not None:
            next_attempt = job.stamper.attempt + 1
        else:  # not decoded yet: what the record itself says
            next_attempt = attempt_floor(0, record.headers) + 1
        delay = await retries.schedule(record, error, next_attempt=next_attempt, lane=job.lane)
        self.metrics.outcome(Outcome.RETRIED)
        self.metrics.redeliveries.labels(self.kind, f"{delay:g}").inc()

    async def error_reply(self, job: Job, code: ErrorCode, message: str) -> ErrorReply:
        """Send the job's final chunk as an error; the job ends with it."""
        self.metrics.outcome(Outcome.ERROR)
        self.metrics.errors.labels(self.kind, code.value).inc()
        final = job.stamper.error(code, message)
        await job.stream.send(final)
        job.final = final
        return final
