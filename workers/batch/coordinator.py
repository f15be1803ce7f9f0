"""The batch coordinator: a consumer group on the batch command topic.

A submit's record stays uncommitted until its batch has ended, so a coordinator that dies
(even by kill -9) leaves it to whoever gets its partition next, which resumes the batch
from what the broker holds (workers/batch/run.py). Commands of one batch share a key, so
they reach the same coordinator in order; cancels and retries act on the runs it holds.
A batch runs as the tenant that submitted it, and only that tenant's commands act on it
(workers/batch/authority.py); a command refused is dead-lettered with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from contracts.batch import (
    BatchCancel,
    BatchCommand,
    BatchInfo,
    BatchRetry,
    BatchState,
    BatchSubmit,
    decode_command,
    initial_info,
)
from contracts.errors import ContractError, FleetError
from contracts.names import (
    BATCH_KIND,
    batch_command_topic,
    batch_dead_letter_topic,
    batch_status_topic,
)
from producer_sdk import TenantClients
from providers.call_retry import CallRetryPolicy
from transport import topology
from transport.group import GroupLoop
from transport.records import Record
from workers.batch.authority import refusal
from workers.batch.requests import ChunkRunner
from workers.batch.run import BatchRun, RunContext
from workers.batch.status import StatusBoard
from workers.broker_wait import BrokerWait
from workers.dead_letter import DeadLetters
from workers.failure_table import TENANT_UNVERIFIED
from workers.health import HealthServer
from workers.health_port import HealthSocket
from workers.metrics import WorkerMetrics
from workers.service_wait import StoppedWaiting
from workers.settings import WorkerSettings
from workers.tenants import warn_if_declared

log = logging.getLogger(__name__)

# The job kinds whose batch lanes the coordinator sends requests to.
BATCH_SENDS_TO = ("embed", "generate", "vectors", "rerank")
# A run the broker broke off resumes after 1 s, doubling to 30 s.
_RESUME = CallRetryPolicy(base_delay_s=1.0, max_delay_s=30.0, jitter="none")


class BatchCoordinator:
    def __init__(
        self, settings: WorkerSettings, *, health_socket: HealthSocket | None = None
    ) -> None:
        """``health_socket``: the health port, bound before the coordinator runs (otherwise
        ``settings.health_port`` is bound once it has caught up)."""
        self.settings = settings
        self._health_socket = health_socket
        self.ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._runs: dict[str, tuple[BatchRun, asyncio.Task[None], TopicPartition]] = {}
        self._loop: GroupLoop | None = None
        self._slots = asyncio.Semaphore(settings.batch.max_batches)
        self._tenant_keys = settings.tenant_verification()
        self._refusals: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        """Stop taking commands and hand back the running batches (whoever takes their
        partitions resumes them)."""
        self._stopping.set()
        if self._loop is not None:
            self._loop.stop()

    async def run(self) -> None:
        warn_if_declared(self._tenant_keys, "batch coordinator")
        try:
            await self._serve()
        except StoppedWaiting:
            log.info("%s stopped before Kafka was reachable", BATCH_KIND)

    async def _serve(self) -> None:
        s = self.settings
        # Every start-up step that needs the broker waits for it, as a worker's do.
        broker = BrokerWait(BATCH_KIND, s.connection, self._stopping)
        topics = s.topology.coordinator_topics(BATCH_SENDS_TO)
        await broker.step("creating its topics", lambda: topology.create(s.connection, topics))
        metrics = WorkerMetrics(BATCH_KIND)
        async with contextlib.AsyncExitStack() as stack:
            producer = await broker.started(
                stack,
                "starting its producer",
                lambda: AIOKafkaProducer(**s.producer_options(), max_request_size=2 * 1024 * 1024),
            )

            async def open_board() -> StatusBoard:
                board = StatusBoard(s.connection, batch_status_topic(s.namespace), producer)
                try:
                    await board.start()
                except BaseException:
                    await board.aclose()
                    raise
                return board

            board = await broker.step("reading batch status", open_board)
            stack.push_async_callback(board.aclose)
            clients = TenantClients(
                s.connection, s.namespace, s.tenant_keys, client_name="batch-coordinator"
            )
            stack.push_async_callback(clients.aclose)
            self._dead_letters = DeadLetters(
                producer, batch_dead_letter_topic(s.namespace), metrics
            )
            self._context = RunContext(
                connection=s.connection,
                namespace=s.namespace,
                producer=producer,
                board=board,
                chunks=ChunkRunner(clients, s.batch),
                settings=s.batch,
                topology=s.topology,
            )
            consumer = await broker.started(
                stack,
                "joining its group",
                lambda: AIOKafkaConsumer(
                    **s.connection.options(),
                    group_id=s.group_for(BATCH_KIND),
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    session_timeout_ms=s.session_timeout_ms,
                    heartbeat_interval_ms=max(s.session_timeout_ms // 3, 1000),
                    max_poll_interval_ms=s.max_poll_interval_ms,
                    metadata_max_age_ms=10_000,
                ),
            )
            await board.caught_up.wait()
            health_port = self._health_socket or s.health_port
            if health_port is not None:
                health = HealthServer(metrics, self.ready.is_set)
                await health.start(health_port)
                stack.push_async_callback(health.aclose)
                log.info("%s worker health on port %d", BATCH_KIND, health.port)
            self._loop = GroupLoop(
                consumer,
                [batch_command_topic(s.namespace)],
                self,
                commit_interval_s=s.commit_interval_s,
                ready=self.ready,
                ready_unassigned=True,
            )
            if self._stopping.is_set():
                return
            log.info("batch coordinator started (group %s)", s.group_for(BATCH_KIND))
            await self._loop.run()

    def take(self, tp: TopicPartition, record: Record) -> None:
        try:
            command = decode_command(record.value or b"")
        except ContractError as exc:
            log.warning("skipped %s[%d]@%d: %s", tp.topic, tp.partition, record.offset, exc)
            return
        board = self._context.board
        known = board.get(command.batch_id)
        why = refusal(command, record, known, self._tenant_keys)
        if why is not None:
            self._refuse(tp, record, command, why)
            return
        running = self._runs.get(command.batch_id)
        if isinstance(command, BatchCancel):
            if running is not None:
                running[0].cancel()
            elif known is not None and not known.ended:
                self._start(tp, record.offset, known, cancel=True)
            return
        if running is not None:
            log.info("batch %s runs already: %s ignored", command.batch_id, _name(command))
            return
        info = self._starting_state(command, known)
        if info is not None:
            self._start(tp, record.offset, info)

    def _refuse(self, tp: TopicPartition, record: Record, command: BatchCommand, why: str) -> None:
        """Dead-letter a command that may not act (``why``); its offset waits for that."""
        log.warning("refused a batch %s of %s: %s", _name(command), command.batch_id, why)
        assert self._loop is not None, "a command is refused once fetched"
        self._loop.started(tp, record.offset)
        task = asyncio.create_task(self._dead_letter(tp, record, why))
        self._refusals.add(task)
        task.add_done_callback(self._refusals.discard)

    async def _dead_letter(self, tp: TopicPartition, record: Record, why: str) -> None:
        try:
            await self._dead_letters.publish(record, TENANT_UNVERIFIED, why)
        except KafkaError:  # refused either way; the warning above says so
            log.exception("a refused batch command was not dead-lettered")
        finally:
            assert self._loop is not None
            self._loop.finished(tp, record.offset)

    def _starting_state(self, command: BatchCommand, known: BatchInfo | None) -> BatchInfo | None:
        """The state a run of ``command`` starts from; None when there is nothing to run."""
        if known is not None and not known.ended:
            return known  # a run that stopped half-way (its coordinator died): resume it
        if isinstance(command, BatchSubmit):
            if known is not None:
                return None  # ended: this submit was read again before its commit
            return initial_info(command)
        assert isinstance(command, BatchRetry)
        if known is None:
            log.warning("retry of batch %s, which does not exist: ignored", command.batch_id)
            return None
        if known.round >= command.round:
            return None  # that round ran already
        now = time.time()
        return known.entering(
            BatchState.IN_PROGRESS,
            now,
            round=command.round,
            expires_at=now + (command.completion_window_s or known.completion_window_s),
            finalizing_at=None,
            completed_at=None,
            expired_at=None,
            cancelling_at=None,
            cancelled_at=None,
            failed_at=None,
            errors=None,
        )

    def _start(
        self, tp: TopicPartition, offset: int, info: BatchInfo, cancel: bool = False
    ) -> None:
        run = BatchRun(info, self._context)
        if cancel:
            run.cancel()
        assert self._loop is not None, "a run starts from a fetched command"
        self._loop.started(tp, offset)
        task = asyncio.create_task(self._run(tp, offset, run), name=f"batch-{info.id}")
        self._runs[info.id] = (run, task, tp)

    async def _run(self, tp: TopicPartition, offset: int, run: BatchRun) -> None:
        """Run the batch to its end; a run the broker broke off (it went away) resumes
        after a backoff from the state it left. Cancellation hands the batch back (its
        record stays uncommitted)."""
        failures = 0
        while True:
            try:
                async with self._slots:
                    await run.run()
                break
            except (KafkaError, OSError, FleetError) as exc:
                delay = _RESUME.backoff_s(min(failures, 5))
                failures += 1
                log.warning("batch %s broke off (%s): resuming in %.0f s", run.info.id, exc, delay)
                await asyncio.sleep(delay)
                resumed = BatchRun(self._context.board.get(run.info.id) or run.info, self._context)
                if run.cancelled:
                    resumed.cancel()
                run = resumed
                self._runs[run.info.id] = (run, self._runs[run.info.id][1], tp)
            except Exception:
                log.exception("batch %s failed in the coordinator", run.info.id)
                break
        self._runs.pop(run.info.id, None)
        assert self._loop is not None
        self._loop.finished(tp, offset)

    async def _hand_back(self, batch_ids: list[str]) -> None:
        tasks = []
        for batch_id in batch_ids:
            if (entry := self._runs.pop(batch_id, None)) is not None:
                entry[1].cancel()
                tasks.append(entry[1])
        await asyncio.gather(*tasks, return_exceptions=True)

    async def release(self, partitions: set[TopicPartition] | None) -> None:
        """Batches of partitions that move (None: all of them) stop here; whoever gets
        the partitions resumes them."""
        await self._hand_back(
            [b for b, (_, _, tp) in self._runs.items() if partitions is None or tp in partitions]
        )
        await asyncio.gather(*self._refusals, return_exceptions=True)


def _name(command: BatchCommand) -> str:
    return type(command).__name__.removeprefix("Batch").lower()
