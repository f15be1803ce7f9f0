"""The links that give every failure its place: a reply the broker would not take, and a
failed job's retry, dead letter or error reply."""

from __future__ import annotations

import logging

from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from contracts.codec import decode_request_head
from contracts.errors import ConfigError
from contracts.names import Header
from providers.errors import ProviderError
from transport.records import header
from workers.failure_table import ReplyTooLarge, RetryTooLarge, failure_of
from workers.runtime.links.admission import ReplyAddresses
from workers.runtime.links.chain import Job, Link
from workers.runtime.links.outcomes import Outcomes

log = logging.getLogger(__name__)


class CatchUndeliverable(Link):
    """A reply the broker would not take. When the caller went away (``ReplyAddresses``
    says whether its reply topic is gone, and remembers it: later jobs for it skip the
    model), the job is dead-lettered. Anything else (a broker restarting, a leader moving)
    is transient: the job is redelivered through a retry tier, and nothing of a live caller
    is dead-lettered while its retry budget lasts."""

    def __init__(self, outcomes: Outcomes, addresses: ReplyAddresses) -> None:
        self._outcomes = outcomes
        self._addresses = addresses

    async def __call__(self, job: Job) -> None:
        try:
            await self.call_next(job)
        except KafkaError as exc:
            failure, detail = failure_of(exc), repr(exc)
            record = job.record
            head = decode_request_head(record.value or b"", header(record, Header.CONTENT_TYPE))
            address = head.reply_to if head is not None else None
            if address is not None and not await self._addresses.gone(address.topic):
                try:
                    if await self._outcomes.redeliver(job, failure, exc):
                        log.warning(
                            "replies for %s failed for now (%s): job redelivered", job.where, exc
                        )
                        return
                except RetryTooLarge as too_large:  # it cannot be parked: it ends here
                    failure, detail = failure_of(too_large), str(too_large)
            log.warning("replies for %s undeliverable: %s", job.where, exc)
            await self._outcomes.dead_letter(record, failure, detail)


class RouteFailures(Link):
    """Where a failed job goes, as the failure table says: a failure worth another try to a
    delayed retry while the job's budget lasts; then, or for any other failure, to the dead
    letters (when the table keeps one) and an error reply to the caller."""

    def __init__(self, outcomes: Outcomes) -> None:
        self._outcomes = outcomes

    async def __call__(self, job: Job) -> None:
        outcomes = self._outcomes
        kind = outcomes.kind
        try:
            await self.call_next(job)
        except (MessageSizeTooLargeError, ReplyTooLarge) as exc:
            # The result does not fit one Kafka message (and cannot travel in parts), or is
            # over the fleet's bound on a whole reply: the caller is there, and gets a small
            # typed error at once instead of waiting for its deadline.
            log.warning("job %s: its reply is too large: %s", job.request.request_id, exc)
            job.stamper.resume_at(job.stream.sent)  # the refused chunk's number
            message = (
                f"the {kind} result is too large to send back ({exc}); "
                "ask for less per request (fewer texts, fewer tokens)"
            )
            await outcomes.settle(job, exc, str(exc), message)
        except KafkaError:
            raise  # the reply could not be sent: CatchUndeliverable's, not the handler's fault
        except ProviderError as exc:
            if not await outcomes.settle(job, exc, f"{exc.code}: {exc.detail}", exc.detail):
                log.warning("job %s failed: %s", job.request.request_id, exc)
        except ConfigError as exc:
            await outcomes.settle(job, exc, str(exc), str(exc))
        except Exception as exc:
            log.exception("job %s crashed in the %s handler", job.request.request_id, kind)
            message = f"the {kind} worker failed on this job ({type(exc).__name__})"
            await outcomes.settle(job, exc, repr(exc), message)
        await job.stream.flush()
