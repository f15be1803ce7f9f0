"""``fleet dlq replay``: dead letters of one kind published again to its request topic, once
their cause is fixed: the batch lane's for a job that came on the batch lane (its source
topic says so, or, for a dead letter of a retry tier, the lane its retry header names).

A replayed record is the original message: its bytes, key and headers (content type, tenant
signature, trace context), without the dead-letter and retry headers, so its retry budget
starts again (a record carries its own retry count).

The ledger (with ``idempotency``, the default) records a dead-lettered job that got an
error reply as done, with that error: a delivery would only send the error again. Before
republishing, the replay calls ``JobLedger.reopen`` on the job, which removes that failed
outcome (and the crash count of a job that killed its workers), so the worker runs the job
again; the ledger keeps its key layout to itself. The choice of clearing the record over
marking the republished message: a mark that makes workers rerun a done job would let
anyone who can write to the request topic rerun any job, and would need the runtime to
trust one more header. A job whose stored outcome is an answer (it has run since, say a
resubmission) is not republished, nor is one a worker is running now.

Replaying the same dead letters twice republishes nothing twice: the replay group
(``workers/ops/replay_progress.py``) remembers, per partition, every record dealt with, and
a later replay passes over them; ``from_start`` (``--from-start``) replays them again. One
replay republishes each job once, however many of its dead letters it selects.

Refused, and counted as skipped (for good: a later replay does not try them again): records
that do not decode as a request of the kind (undecodable bytes, a schema violation, a
control message), requests whose deadline has passed (a worker would answer them
``timeout`` without running them), and jobs the ledger will not reopen.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

import msgspec
from aiokafka import AIOKafkaProducer, TopicPartition

from contracts.codec import AnyRequest
from contracts.errors import ContractError
from contracts.names import Header, Lane, batch_request_topic, control_topic, lane_topic
from providers.redis_client import connect_redis
from transport.connection import start_client
from workers.idempotency import JobLedger, Reopening, job_ref
from workers.ops.dead_letters import DeadLetter, DeadLetterFilter, DeadLetterInfo, DeadLetterReader
from workers.ops.replay_progress import ReplayProgress
from workers.retry import retry_lane
from workers.settings import WorkerSettings

_STRIPPED_PREFIXES = (Header.DLQ_PREFIX, Header.RETRY_PREFIX)


class Action(enum.StrEnum):
    REPLAYED = "replayed"
    WOULD_REPLAY = "would replay"  # --dry-run
    SKIPPED = "skipped"


class ReplayOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What the replay did with one selected dead letter, and why when it did not replay it."""

    info: DeadLetterInfo
    action: Action
    why: str = ""


class ReplayOptions(msgspec.Struct, frozen=True, kw_only=True):
    selection: DeadLetterFilter = DeadLetterFilter()
    # Say what would be replayed; publish, clear and commit nothing (nor ask the ledger).
    dry_run: bool = False
    from_start: bool = False  # replay dead letters an earlier replay dealt with, too


class ReplayTotals(msgspec.Struct, kw_only=True):
    replayed: int = 0  # or, in a dry run, would be
    skipped: int = 0
    replayed_before: int = 0  # selected, but an earlier replay dealt with them
    not_selected: int = 0


def replay_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The original message's headers: without the dead-letter and retry families."""
    return [(k, v) for k, v in letter.headers if not k.startswith(_STRIPPED_PREFIXES)]


def replay_lane(letter: DeadLetter, kind: str, namespace: str) -> Lane:
    """The lane the dead letter's job came on, which the replay sends it back to."""
    if letter.info.source_topic == batch_request_topic(kind, namespace):
        return "batch"
    try:
        return retry_lane(letter.headers)  # dead-lettered from a retry tier
    except ContractError:
        return "interactive"


def refusal(letter: DeadLetter, kind: str, namespace: str, now_ms: float) -> str | None:
    """Why the dead letter cannot be replayed, or None when it can."""
    if letter.info.source_topic == control_topic(kind, namespace):
        return "a control message (a cancel), not a request: there is nothing to run"
    request = letter.request
    if isinstance(request, ContractError):
        return f"not a {kind} request the workers can read ({request.reason}): {request}"
    if request.deadline_ms is not None and request.deadline_ms < now_ms:
        return (
            f"its deadline passed at {request.deadline_ms} ms: a worker would answer it "
            "`timeout` without running it"
        )
    return None


class _Republisher:
    """Clears a job's failed outcome in the ledger (when the workers keep one), then
    publishes its original message to the request topic of its lane."""

    def __init__(self, settings: WorkerSettings, kind: str) -> None:
        self._kind = kind
        self._settings = settings
        self._producer = AIOKafkaProducer(**settings.producer_options())  # as the workers'
        self._redis = connect_redis(settings.redis_url) if settings.idempotency else None
        self._ledger = (
            JobLedger(self._redis, settings.namespace, result_ttl_s=settings.result_ttl_s)
            if self._redis is not None
            else None
        )

    async def start(self) -> None:
        await start_client(self._producer, self._settings.connection)

    async def stop(self) -> None:
        await self._producer.stop()
        if self._redis is not None:
            await self._redis.aclose()

    async def reopen(self, request: AnyRequest) -> str | None:
        """Make the job runnable again; why not, when the ledger says it must not run."""
        if self._ledger is None:
            return None
        state = await self._ledger.reopen(job_ref(self._kind, request.tenant, request.request_id))
        if state is Reopening.SUCCEEDED:
            return "it has run since and succeeded: the ledger holds its answer"
        if state is Reopening.RUNNING:
            return "a worker is running it now"
        return None

    async def publish(self, letter: DeadLetter) -> None:
        namespace = self._settings.namespace
        topic = lane_topic(self._kind, replay_lane(letter, self._kind, namespace), namespace)
        await self._producer.send_and_wait(
            topic, letter.value, key=letter.key, headers=replay_headers(letter)
        )


async def replay_dead_letters(
    settings: WorkerSettings,
    kind: str,
    options: ReplayOptions,
    report: Callable[[ReplayOutcome], None],
) -> ReplayTotals:
    """Replay the selected dead letters of ``kind`` that were there on entry; ``report`` is
    told of each selected one as the replay deals with it."""
    totals = ReplayTotals()
    async with (
        DeadLetterReader(settings, kind) as reader,
        ReplayProgress(settings, kind, reader.partitions) as progress,
    ):
        for tp, start in reader.starts.items():
            progress.partitions[tp].skip_to(start)
        republisher = None if options.dry_run else _Republisher(settings, kind)
        replayed_jobs: set[str] = set()
        try:
            if republisher is not None:
                await republisher.start()
            async for letter in reader.letters():
                info = letter.info
                tp = TopicPartition(reader.topic, info.partition)
                if not options.selection.selects(info):
                    totals.not_selected += 1
                    continue
                if progress.dealt_with(tp, info.offset) and not options.from_start:
                    totals.replayed_before += 1
                    continue
                if republisher is not None:
                    progress.check_room(tp, info.offset)
                outcome = await _replay_one(letter, kind, settings, republisher, replayed_jobs)
                if republisher is not None:
                    await progress.commit(tp, info.offset)
                if outcome.action is Action.SKIPPED:
                    totals.skipped += 1
                else:
                    totals.replayed += 1
                report(outcome)
        finally:
            if republisher is not None:
                await republisher.stop()
    return totals


async def _replay_one(
    letter: DeadLetter,
    kind: str,
    settings: WorkerSettings,
    republisher: _Republisher | None,
    replayed_jobs: set[str],
) -> ReplayOutcome:
    """Replay one selected dead letter (``republisher`` None: a dry run, which says only
    what it would do)."""
    info = letter.info
    why = refusal(letter, kind, settings.namespace, time.time() * 1000)
    if why is not None:
        return ReplayOutcome(info=info, action=Action.SKIPPED, why=why)
    request = letter.request
    assert not isinstance(request, ContractError)  # refused above
    ref = job_ref(kind, request.tenant, request.request_id)
    if ref in replayed_jobs:
        why = "another dead letter of the same job was replayed by this run"
        return ReplayOutcome(info=info, action=Action.SKIPPED, why=why)
    replayed_jobs.add(ref)
    if republisher is None:
        return ReplayOutcome(info=info, action=Action.WOULD_REPLAY)
    why = await republisher.reopen(request)
    if why is not None:
        return ReplayOutcome(info=info, action=Action.SKIPPED, why=why)
    await republisher.publish(letter)
    return ReplayOutcome(info=info, action=Action.REPLAYED)
