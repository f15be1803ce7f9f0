"""The links that decide whether a job may run at all: it decodes, its tenant is who it
says, its reply address is one the fleet replies to, its caller is still there, its
deadline has not passed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from contracts.codec import (
    content_type_of,
    decode_request,
    decode_request_head,
)
from contracts.envelope import ReplyAddress
from contracts.errors import ContractError, ContractViolation
from contracts.names import Header
from transport.publisher import Publisher, TopicProbe
from transport.records import Record, header
from workers.failure_table import (
    BAD_REPLY_ADDRESS,
    DEADLINE_PASSED,
    REPLY_TOPIC_GONE,
    TENANT_UNVERIFIED,
    Failure,
    failure_of,
)
from workers.handlers.reply_stream import ChunkStamper, GoneTopics, ReplyStream
from workers.metrics import Outcome, WorkerMetrics
from workers.retry import attempt_floor, retry_count
from workers.runtime.links.chain import Job, Link
from workers.runtime.links.outcomes import Outcomes
from workers.settings import ReplyLimits
from workers.tenants import unverified

log = logging.getLogger(__name__)


class Decode(Link):
    """Bytes to a typed request and its reply stream; what does not decode is dead-lettered
    (and answered, when its reply address can still be read)."""

    def __init__(
        self,
        outcomes: Outcomes,
        producer: Publisher,
        max_payload_bytes: int,
        reply_limits: ReplyLimits,
        addresses: ReplyAddresses,
    ) -> None:
        self._outcomes = outcomes
        self._producer = producer
        self._max_payload_bytes = max_payload_bytes
        self._reply_limits = reply_limits
        self._addresses = addresses

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
        job.stream = ReplyStream(
            self._producer, request.reply_to, job.content_type, self._reply_limits
        )
        # Each redelivery through a retry tier is the next attempt, ledger or not (with the
        # ledger, Claim numbers every delivery, crash takeovers included, from this floor).
        try:
            attempt = attempt_floor(request.attempt, job.record.headers)
        except ContractError as exc:  # a retry header the fleet did not write
            await self._reject(job, exc)
            return
        job.stamper = ChunkStamper(request.request_id, attempt)
        if (claimed := header(job.record, Header.TENANT)) is not None and claimed != request.tenant:
            # The fair queue shared the lane by this header (decision 0044); a record whose
            # header names another tenant than its request took that tenant's share, and
            # runs for no one.
            await self._reject(
                job,
                ContractError(
                    f"header {Header.TENANT} is {claimed[:40]!r}, the request's tenant is "
                    f"{request.tenant!r}",
                    reason=ContractViolation.BAD_HEADER,
                ),
            )
            return
        await self.call_next(job)

    async def _reject(self, job: Job, exc: ContractError) -> None:
        log.warning("dead-lettering %s: %s", job.where, exc)
        self._outcomes.metrics.outcome(Outcome.REJECTED)
        failure = failure_of(exc)
        await self._outcomes.dead_letter(job.record, failure, str(exc))
        head = decode_request_head(job.record.value or b"", job.content_type)
        if head is None or not head.request_id or head.reply_to is None:
            return
        if await self._addresses.refused(head.reply_to) is not None:
            return  # nowhere the fleet would send to: the dead letter is all there is
        stamper = ChunkStamper(head.request_id, head.attempt)
        stream = ReplyStream(self._producer, head.reply_to, job.content_type)
        await stream.send(stamper.error(failure.code, str(exc)))
        await stream.flush()


class ReplyAddresses:
    """Where the fleet replies: a topic of the namespace's reply family (or one the settings
    name) that the broker knows, at a partition it has. Asked before anything is sent to an
    address, so a bad one never stalls the shared producer in a wait for metadata; and the
    one judge of whether a caller went away (its reply topic is gone)."""

    def __init__(
        self, allowed: Callable[[str], bool], probe: TopicProbe | None, gone: GoneTopics
    ) -> None:
        self._allowed = allowed
        self._probe = probe
        self._gone = gone

    async def refused(self, address: ReplyAddress) -> tuple[Failure, str] | None:
        """Why nothing may be sent to ``address``; None when it looks deliverable."""
        topic = address.topic
        if not self._allowed(topic):
            return BAD_REPLY_ADDRESS, f"{topic!r} is not a reply topic of this fleet"
        partitions = await self._partitions(topic)
        if partitions == 0:
            return REPLY_TOPIC_GONE, f"{topic!r} does not exist (or did not, lately)"
        if partitions is not None and (address.partition or 0) >= partitions:
            detail = f"{topic!r} has {partitions} partitions, not {address.partition}"
            return BAD_REPLY_ADDRESS, detail
        return None

    async def gone(self, topic: str) -> bool:
        """Whether the caller that reads ``topic`` went away; False when the broker cannot
        say."""
        return await self._partitions(topic) == 0

    async def _partitions(self, topic: str) -> int | None:
        """How many partitions ``topic`` has; 0 when it does not exist, as the broker says
        now or said lately (remembered, so that later jobs for a caller that went away cost
        neither a model call nor a wait on the broker each); None when the broker cannot
        say."""
        if topic in self._gone:
            return 0
        if self._probe is None:
            return None
        partitions = await self._probe(topic)
        if partitions == 0:
            self._gone.mark(topic)
        return partitions


class CheckReplyAddress(Link):
    """A job whose reply address the fleet would not send to is dead-lettered, unanswered
    and not run."""

    def __init__(self, outcomes: Outcomes, addresses: ReplyAddresses) -> None:
        self._outcomes = outcomes
        self._addresses = addresses

    async def __call__(self, job: Job) -> None:
        address = job.request.reply_to
        refused = await self._addresses.refused(address) if address is not None else None
        if refused is None:
            await self.call_next(job)
            return
        failure, why = refused
        log.warning("not running %s: %s", job.where, why)
        self._outcomes.metrics.outcome(Outcome.REJECTED)
        await self._outcomes.dead_letter(job.record, failure, why)


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
        await self._outcomes.dead_letter(job.record, TENANT_UNVERIFIED, why)
        await self._outcomes.error_reply(job, TENANT_UNVERIFIED.code, why)
        await job.stream.flush()


class Deadline(Link):
    """A delivery of a job whose deadline has passed is answered `timeout`, not run. With
    the ledger it sits inside Claim, so a job that has answered is replayed instead, and
    this timeout is not stored (a resubmission with a later deadline runs)."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics

    async def __call__(self, job: Job) -> None:
        deadline_ms = job.request.deadline_ms
        if deadline_ms is not None and deadline_ms < time.time() * 1000:
            await answer_expired(job, self._metrics, expired_message(job.record))
            return
        await self.call_next(job)


async def answer_expired(job: Job, metrics: WorkerMetrics, message: str) -> None:
    """End a job that was not run because its deadline passed: answered `timeout`."""
    metrics.outcome(Outcome.EXPIRED)
    await job.stream.send(job.stamper.error(DEADLINE_PASSED.code, message))
    await job.stream.flush()


def expired_message(record: Record) -> str:
    """What happened to a job found past its deadline, as far as its record tells: this
    delivery waited and was not run, and before it the job ran and failed that many times
    (why, the last time), when it came back through the retry topics."""
    failed = retry_count(record.headers)
    if failed == 0:
        return "the request's deadline passed while it waited for a worker: it was not run"
    reason = header(record, Header.RETRY_REASON)
    last = f" (the last time: {reason})" if reason else ""
    times = "once" if failed == 1 else f"{failed} times"
    return (
        f"the request's deadline passed while its retry waited: it had run and failed "
        f"{times}{last}, and was not run again"
    )
