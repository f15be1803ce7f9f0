"""Assembles one category's worker from settings: its handler, Kafka clients and loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts.names import (
    WORKER_KINDS,
    Lane,
    control_topic,
    dead_letter_topic,
    lane_topic,
    request_topic,
)
from providers.redis_client import RedisPool
from providers.shared import Shared
from transport import topology
from transport.publisher import broker_topic_probe
from workers.broker_wait import BrokerWait
from workers.budgets import Budgets
from workers.control import ControlListener
from workers.dead_letter import DeadLetters
from workers.fairness_board import keep_posted
from workers.handlers import JobHandler, build_handler
from workers.health import HealthServer
from workers.health_port import HealthSocket
from workers.idempotency import JobLedger
from workers.metrics import WorkerMetrics
from workers.parking import ParkingLot
from workers.retry import RedeliveryForwarder, RedeliveryScheduler
from workers.runtime.consumer import JobConsumer
from workers.runtime.lanes import LaneGate
from workers.runtime.runner import JobRunner, TurnSettings
from workers.service_wait import StoppedWaiting
from workers.settings import WorkerSettings
from workers.tenant_leases import TenantLeases
from workers.tenants import warn_if_declared

log = logging.getLogger(__name__)

# A fetch loop that has not come round for this long is stuck (/healthz says so).
FETCH_STALL_S = 60.0

__all__ = ["WORKER_KINDS", "Worker", "build_handler", "build_worker"]


async def build_worker(
    kind: str,
    settings: WorkerSettings,
    metrics: WorkerMetrics | None = None,
    *,
    health_socket: HealthSocket | None = None,
) -> Worker:
    """A worker of one kind with its handler, sharing one Redis pool between the handler's
    providers and the worker's own ledger. ``health_socket``: the health port, bound before
    the models load (otherwise ``settings.health_port`` is bound when the worker runs)."""
    metrics = metrics or WorkerMetrics(kind, settings.named_tenants())
    redis = RedisPool(settings.redis_url)
    try:
        shared = Shared(
            redis=redis, models=settings.model_catalogue(), model_threads=settings.model_threads
        )
        handler = await build_handler(kind, settings, shared, metrics)
    except BaseException:
        await redis.aclose()
        raise
    return Worker(kind, settings, handler, metrics, redis=redis, health_socket=health_socket)


class Worker:
    """A consumer-group member for one job kind. ``run`` until ``stop`` is called.

    The worker owns the handler and the Redis pool it is given (and closes both when
    ``run`` ends, the handler first): the handler's providers may hold the pool's clients."""

    def __init__(
        self,
        kind: str,
        settings: WorkerSettings,
        handler: JobHandler[Any],
        metrics: WorkerMetrics | None = None,
        *,
        redis: RedisPool | None = None,
        health_socket: HealthSocket | None = None,
    ) -> None:
        self.kind = kind
        self._health_socket = health_socket
        self.settings = settings
        self.handler = handler
        self.redis = redis or RedisPool(settings.redis_url)
        self.metrics = metrics or WorkerMetrics(kind, settings.named_tenants())
        self.ready = asyncio.Event()
        self.health: HealthServer | None = None
        self._loops: list[JobConsumer | RedeliveryForwarder | ControlListener] = []
        self._stop_requested = asyncio.Event()
        self._broker = BrokerWait(kind, settings.connection, self._stop_requested)

    @property
    def jobs(self) -> JobConsumer:
        """The consume loop of the request topic (exists once ``run`` has started it)."""
        main = self._loops[0] if self._loops else None
        assert isinstance(main, JobConsumer), "the worker is not running"
        return main

    @property
    def lanes(self) -> list[JobConsumer]:
        """The consume loops of both lanes, interactive first (the batch lane's only when
        ``batch_concurrency`` is not 0)."""
        return [loop for loop in self._loops if isinstance(loop, JobConsumer)]

    def stop(self) -> None:
        """Stop fetching; in-flight jobs finish (or are handed back), offsets are committed."""
        self._stop_requested.set()
        for loop in self._loops:
            loop.stop()

    async def run(self) -> None:
        warn_if_declared(self.settings.tenant_verification(), f"{self.kind} worker")
        try:
            await self._run()
        except StoppedWaiting:
            log.info("%s worker stopped before Kafka was reachable", self.kind)

    async def _run(self) -> None:
        s = self.settings
        await self._broker.step("creating its topics", self._create_topics)
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self.redis.aclose)
            stack.push_async_callback(self.handler.aclose)
            producer = await self._broker.started(
                stack, "starting its producer", lambda: AIOKafkaProducer(**s.producer_options())
            )
            dead_letters = DeadLetters(
                producer, dead_letter_topic(self.kind, s.namespace), self.metrics
            )
            main, *batch = await self._job_consumers(stack, producer, dead_letters)
            control = await self._broker.started(
                stack,
                "starting its control consumer",
                lambda: AIOKafkaConsumer(**s.connection.options(), group_id=None),
            )
            self._loops = [
                main,
                ControlListener(
                    control,
                    control_topic(self.kind, s.namespace),
                    main.runner.cancel,
                    s.tenant_verification(),
                    dead_letters,
                    main.runner.first_to_claim,
                ),
                *batch,
            ]
            # The retry tiers' forwarders, and the park topic's (decision 0045): that one
            # runs with parking off too, so that what was parked before comes back.
            for source, group in s.topology.deferred(self.kind).values():
                self._loops.append(
                    RedeliveryForwarder(
                        consumer=await self._consumer(stack, group),
                        producer=producer,
                        kind=self.kind,
                        namespace=s.namespace,
                        source=source,
                        dead_letters=dead_letters,
                    )
                )
            health_port = self._health_socket or s.health_port
            if health_port is not None:
                self.health = HealthServer(
                    self.metrics,
                    self.ready.is_set,
                    self._update_lag,
                    self.handler.health,
                    wedged=lambda: self._wedged(producer),
                )
                await self.health.start(health_port)
                stack.push_async_callback(self.health.aclose)
                log.info("%s worker health on port %d", self.kind, self.health.port)
            log.info(
                "%s worker: a failing job is redelivered up to %d times (after %s s), "
                "then dead-lettered",
                self.kind,
                s.retry.max_retries,
                ", ".join(f"{d:g}" for d in s.retry.tiers_s),
            )
            if self._stop_requested.is_set():
                self.stop()
            ready_watch = asyncio.create_task(self._mark_ready(main, self._control()))
            # The lanes' tenants and fairness state, for `fleet status --fairness`.
            stopped = asyncio.Event()
            board = asyncio.create_task(
                keep_posted(
                    self.redis.client(),
                    s.namespace,
                    self.kind,
                    lambda: [lane.lane_state() for lane in self.lanes],
                    stopped,
                )
            )
            try:
                await asyncio.gather(*(loop.run() for loop in self._loops))
            finally:
                ready_watch.cancel()
                stopped.set()
                await board
        log.info("%s worker stopped", self.kind)

    async def _create_topics(self) -> None:
        """Create this kind's topics (those missing), warning when the request topic has
        fewer partitions than configured."""
        s = self.settings
        partitions = await topology.create(s.connection, s.topology.kind_topics(self.kind))
        requests = request_topic(self.kind, s.namespace)
        if (have := partitions[requests]) < s.partitions:
            log.warning(
                "%s has %d partitions, fewer than partitions = %d: at most %d workers of "
                "the group get work (add partitions to the topic to use more)",
                requests, have, s.partitions, have,
            )  # fmt: skip

    async def _job_consumers(
        self,
        stack: contextlib.AsyncExitStack,
        producer: AIOKafkaProducer,
        dead_letters: DeadLetters,
    ) -> list[JobConsumer]:
        """The interactive lane's consume loop, then the batch lane's (unless
        ``batch_concurrency`` is 0): one runner (so a cancel finds a job of either lane),
        one lane gate, a consumer group each."""
        s = self.settings
        ledger = None
        if s.idempotency:
            ledger = JobLedger(
                self.redis.client(),
                s.namespace,
                lock_ttl_s=s.lock_ttl_s,
                result_ttl_s=s.result_ttl_s,
                max_crash_attempts=s.max_crash_attempts,
            )
        gate = LaneGate(s.concurrency_for(self.kind), s.batch_concurrency_for(self.kind))
        leases = TenantLeases(self.redis.client(), s.namespace, ttl_s=s.lock_ttl_s)
        runner = JobRunner(
            kind=self.kind,
            handler=self.handler,
            producer=producer,
            dead_letters=dead_letters,
            max_payload_bytes=s.max_payload_bytes,
            metrics=self.metrics,
            ledger=ledger,
            retries=RedeliveryScheduler(producer, self.kind, s.namespace, s.retry),
            topic_probe=broker_topic_probe(producer, request_topic(self.kind, s.namespace)),
            tenant_keys=s.tenant_verification(),
            reply_limits=s.replies,
            reply_topic_allowed=s.reply_topic_allowed,
            turns=TurnSettings(leases, s.tenants, gate),
            budgets=(
                Budgets(self.redis.client(), s.namespace, s.budgets, hold_s=s.budget_hold_s)
                if s.budgets
                else None
            ),
            models=s.model_catalogue(),
        )
        lanes: list[Lane] = ["interactive", "batch"] if gate.batch_limit > 0 else ["interactive"]
        return [
            JobConsumer(
                consumer=await self._consumer(stack, s.lane_group(self.kind, lane)),
                topic=lane_topic(self.kind, lane, s.namespace),
                runner=runner,
                gate=gate,
                lane=lane,
                commit_interval_s=s.commit_interval_s,
                shutdown_grace_s=s.shutdown_grace_s,
                keep_jobs_on_revoke=ledger is not None,
                metrics=self.metrics,
                fairness=s.fairness,
                parking=(
                    ParkingLot(producer, self.kind, s.namespace, s.fairness.park_delay_ms / 1000)
                    if s.fairness.park
                    else None
                ),
            )
            for lane in lanes
        ]

    async def _consumer(self, stack: contextlib.AsyncExitStack, group: str) -> AIOKafkaConsumer:
        s = self.settings
        return await self._broker.started(
            stack,
            f"starting its consumer of group {group}",
            lambda: AIOKafkaConsumer(
                **s.connection.options(),
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_interval_ms=s.max_poll_interval_ms,
                session_timeout_ms=s.session_timeout_ms,
                heartbeat_interval_ms=max(s.session_timeout_ms // 3, 1000),
                # Notice new partitions (and topics created late) within seconds, not minutes.
                metadata_max_age_ms=10_000,
            ),
        )

    def _wedged(self, producer: AIOKafkaProducer) -> str | None:
        """Why this worker cannot make progress, if it knows: its fetch loop stopped coming
        round (it does every second), or its producer's sender task ended (every send would
        then wait forever)."""
        for lane in self.lanes:
            if (stalled := lane.fetch_stalled_s()) > FETCH_STALL_S:
                return f"the {lane.lane} consume loop has not come round for {stalled:.0f} s"
        sender = getattr(producer, "_sender", None)  # aiokafka's: no public accessor
        task = getattr(sender, "sender_task", None)
        if isinstance(task, asyncio.Task) and task.done():
            return "the Kafka producer's sender has stopped"
        return None

    def _control(self) -> ControlListener:
        return next(loop for loop in self._loops if isinstance(loop, ControlListener))

    async def _mark_ready(self, main: JobConsumer, control: ControlListener) -> None:
        """Ready once its partitions are assigned and its control listener reads from a known
        offset (a cancel sent before that would be missed)."""
        await main.ready.wait()
        await control.ready.wait()
        self.ready.set()
        log.info("%s worker ready (group %s)", self.kind, self.settings.group_for(self.kind))

    async def _update_lag(self) -> None:
        if not self.ready.is_set():
            return
        for lane in self.lanes:
            for partition, lag in (await lane.lag()).items():
                self.metrics.lag.labels(self.kind, str(partition), lane.lane).set(lag)
