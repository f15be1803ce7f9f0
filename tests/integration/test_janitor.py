"""Reply topics of clients that died are found by their silence and removed; live ones stay."""

from __future__ import annotations

import time

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from contracts import reply_topic
from tests.conftest import Infra
from transport.topic_admin import delete_topics, ensure_topics
from workers import WorkerSettings
from workers.ops.inspect import stamp_unseen, survey_reply_topics

pytestmark = [pytest.mark.kafka]


async def test_the_janitor_takes_dead_clients_topics_only(
    settings: WorkerSettings, infra: Infra, namespace: str
) -> None:
    silent = reply_topic("died-two-hours-ago", namespace)
    empty = reply_topic("no-heartbeat-yet", namespace)
    await ensure_topics(infra.connection, {silent: 1, empty: 1})
    producer = AIOKafkaProducer(**infra.kafka_options())
    await producer.start()
    try:
        two_hours_ago_ms = int((time.time() - 7200) * 1000)
        await producer.send_and_wait(silent, b"", timestamp_ms=two_hours_ago_ms)
    finally:
        await producer.stop()

    async with infra.client(namespace=namespace) as live:
        survey = await survey_reply_topics(settings, older_than_s=600)
        assert [t.topic for t in survey.stale] == [silent]
        assert survey.stale[0].silent_s > 7000
        # Empty: as young as a client that has not sent its first heartbeat, or emptied by
        # retention. Not deleted: stamped, so that a later run can tell its age.
        assert survey.empty == [empty]
        await stamp_unseen(settings, survey.empty)
        again = await survey_reply_topics(settings, older_than_s=600)
        assert [t.topic for t in again.stale] == [silent]
        assert again.empty == []
        judged_later = await survey_reply_topics(settings, older_than_s=0)
        assert empty in {t.topic for t in judged_later.stale}  # its stamp's age counts
        await delete_topics(infra.connection, [silent, empty])

        admin = AIOKafkaAdminClient(**infra.kafka_options())
        await admin.start()
        try:
            left = {t for t in await admin.list_topics() if t.startswith(f"{namespace}.")}
        finally:
            await admin.close()
        assert live.reply_address.topic in left  # its heartbeat keeps it
        assert silent not in left
        assert empty not in left
