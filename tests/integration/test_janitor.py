"""Reply topics of clients that died are found by their silence and removed; live ones stay."""

from __future__ import annotations

import time

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from contracts import reply_topic
from producer_sdk import FleetClient
from producer_sdk.topics import delete_topics, ensure_topics
from tests.conftest import Infra
from workers import WorkerSettings
from workers.ops.inspect import stale_reply_topics

pytestmark = [pytest.mark.kafka]


async def test_the_janitor_takes_dead_clients_topics_only(
    settings: WorkerSettings, infra: Infra, namespace: str
) -> None:
    silent = reply_topic("died-two-hours-ago", namespace)
    empty = reply_topic("died-long-ago", namespace)  # retention has emptied it
    await ensure_topics(infra.bootstrap_servers, {silent: 1, empty: 1})
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    await producer.start()
    try:
        two_hours_ago_ms = int((time.time() - 7200) * 1000)
        await producer.send_and_wait(silent, b"", timestamp_ms=two_hours_ago_ms)
    finally:
        await producer.stop()

    async with FleetClient(infra.bootstrap_servers, namespace=namespace) as live:
        stale = await stale_reply_topics(settings, older_than_s=600)
        assert {t.topic for t in stale} == {silent, empty}
        by_topic = {t.topic: t.silent_s for t in stale}
        assert by_topic[empty] is None
        silent_s = by_topic[silent]
        assert silent_s is not None
        assert silent_s > 7000
        await delete_topics(infra.bootstrap_servers, [t.topic for t in stale])

        admin = AIOKafkaAdminClient(bootstrap_servers=infra.bootstrap_servers)
        await admin.start()
        try:
            left = {t for t in await admin.list_topics() if t.startswith(f"{namespace}.")}
        finally:
            await admin.close()
        assert live.reply_address.topic in left  # its heartbeat keeps it
        assert silent not in left
        assert empty not in left
