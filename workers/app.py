"""Assembles one category's worker from settings: Kafka clients, handler, consume loop."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts.names import dead_letter_topic, request_topic
from providers.chat import chat_providers
from providers.chat.router import ChatRouter
from providers.memory import memory_stores
from workers.consumer import JobConsumer
from workers.dead_letter import DeadLetters
from workers.generate import GenerateHandler
from workers.handler import JobHandler
from workers.jobs import JobRunner
from workers.settings import WorkerSettings
from workers.topics import ensure_topics, kind_topics

log = logging.getLogger(__name__)

WORKER_KINDS = ("generate",)


async def build_handler(kind: str, settings: WorkerSettings) -> JobHandler:
    if kind != "generate":
        raise ValueError(f"no {kind!r} worker yet; available: {', '.join(WORKER_KINDS)}")
    providers = [chat_providers.create(spec.name, spec.config) for spec in settings.chat]
    for provider in providers:
        await provider.load()
    memory = None
    if settings.memory is not None:
        config = dict(settings.memory.config)
        if settings.memory.name == "redis":
            config.setdefault("url", settings.redis_url)
        memory = memory_stores.create(settings.memory.name, config)
    return GenerateHandler(ChatRouter(providers), memory)


class Worker:
    """A consumer-group member for one job kind. ``run`` until ``stop`` is called."""

    def __init__(self, kind: str, settings: WorkerSettings, handler: JobHandler) -> None:
        self.kind = kind
        self.settings = settings
        self.handler = handler
        self._consumer_loop: JobConsumer | None = None
        self._stop_requested = asyncio.Event()
        self.ready = asyncio.Event()

    def stop(self) -> None:
        self._stop_requested.set()
        if self._consumer_loop is not None:
            self._consumer_loop.stop()

    async def run(self) -> None:
        s = self.settings
        await ensure_topics(s.bootstrap_servers, kind_topics(self.kind, s.namespace, s.partitions))
        producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers, linger_ms=0, acks="all", enable_idempotence=True
        )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            group_id=s.group_for(self.kind),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=300_000,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
        )
        await producer.start()
        await consumer.start()
        try:
            runner = JobRunner(
                kind=self.kind,
                handler=self.handler,
                producer=producer,
                dead_letters=DeadLetters(producer, dead_letter_topic(self.kind, s.namespace)),
                max_payload_bytes=s.max_payload_bytes,
            )
            loop = JobConsumer(
                consumer=consumer,
                topic=request_topic(self.kind, s.namespace),
                runner=runner,
                concurrency=s.concurrency,
                commit_interval_s=s.commit_interval_s,
                shutdown_grace_s=s.shutdown_grace_s,
            )
            self._consumer_loop = loop
            if self._stop_requested.is_set():
                loop.stop()
            ready_watch = asyncio.create_task(self._mark_ready(loop))
            try:
                await loop.run()
            finally:
                ready_watch.cancel()
        finally:
            await consumer.stop()
            await producer.stop()
            await self.handler.aclose()
            log.info("%s worker stopped", self.kind)

    async def _mark_ready(self, loop: JobConsumer) -> None:
        await loop.ready.wait()
        self.ready.set()
        log.info("%s worker ready (group %s)", self.kind, self.settings.group_for(self.kind))
