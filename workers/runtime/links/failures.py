"""The links that give every failure its place: a reply the broker would not take, and a
failed job's retry, dead letter or error reply."""

from __future__ import annotations

import logging

from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from contracts.codec import (
    decode_request_head,
)
from contracts.errors import ConfigError, ErrorCode
from contracts.names import DeadLetterReason, Header
from providers.errors import ProviderError
from transport.publisher import TopicProbe
from transport.records import header
from workers.handlers.reply_stream import GoneTopics, ReplyTooLarge
from workers.retry import RedeliveryScheduler
from workers.runtime.links.chain import Job, Link
from workers.runtime.links.outcomes import Outcomes

log = logging.getLogger(__name__)


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
            partitions = await self._probe(topic) if topic and self._probe else 0
            if partitions != 0 and await self._redeliver(job, exc):
                return
            log.warning("replies for %s undeliverable: %s", job.where, exc)
            if topic is not None and partitions == 0:
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
        await self._outcomes.redeliver(self._retries, job, error)
        return True


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
                    await outcomes.redeliver(self._retries, job, exc)
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
        except (MessageSizeTooLargeError, ReplyTooLarge) as exc:
            # The result does not fit one Kafka message (and cannot travel in parts), or is
            # over the fleet's bound on a whole reply: the caller is there, and gets a small
            # typed error at once instead of waiting for its deadline.
            log.warning("job %s: its reply is too large: %s", job.request.request_id, exc)
            reason = DeadLetterReason.REPLY_TOO_LARGE
            await outcomes.dead_letter(job.record, ErrorCode.INVALID_INPUT, reason, str(exc))
            message = (
                f"the {outcomes.kind} result is too large to send back ({exc}); "
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
