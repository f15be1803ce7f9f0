"""Clients that may not create topics share a reply topic made beforehand: each gets its own
replies (even under the same request ids), none creates or deletes a topic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from contracts.errors import FleetError
from contracts.names import reply_topic, shared_reply_topic
from providers.router import ModelRouter
from tests.conftest import Infra
from tests.integration.harness import serving, topic_names
from tests.integration.scripted_chat import ScriptedChat
from transport.topic_admin import ensure_topics
from workers import Worker, WorkerSettings
from workers.handlers.generate import GenerateHandler

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

MODEL = "scripted-model"


@pytest.fixture
async def echo_worker(settings: WorkerSettings) -> AsyncIterator[Worker]:
    chat = ScriptedChat(echo=True, pieces=())
    worker = Worker("generate", settings, GenerateHandler(ModelRouter("chat", [chat])))
    async with serving(worker):
        yield worker


async def test_instances_sharing_a_reply_topic_each_get_their_own_answers(
    infra: Infra, namespace: str, echo_worker: Worker
) -> None:
    shared = shared_reply_topic("billing", namespace)
    await ensure_topics(infra.connection, {shared: 3})  # the operator, beforehand
    async with (
        infra.client(namespace=namespace, tenant="a", reply_topic=shared) as first,
        infra.client(namespace=namespace, tenant="b", reply_topic=shared) as second,
    ):

        async def ask(client_name: str, i: int) -> None:
            client = first if client_name == "first" else second
            prompt = f"{client_name} asks {i}"
            # The same request ids from both clients (their tenants keep the ledger's
            # records apart): only the reply's client id tells the answers apart.
            answer = await client.generate(prompt, model=MODEL, request_id=f"same-{i}")
            assert answer.text == prompt

        await asyncio.gather(*(ask(name, i) for name in ("first", "second") for i in range(20)))
        made = {reply_topic(c.client_id, namespace) for c in (first, second)}
    topics = await topic_names(infra)
    assert shared in topics
    assert not made & topics, "a client sharing a reply topic created one of its own"


async def test_a_pinned_partition_is_the_only_one_read(
    infra: Infra, namespace: str, echo_worker: Worker
) -> None:
    shared = shared_reply_topic("pinned", namespace)
    await ensure_topics(infra.connection, {shared: 2})
    async with infra.client(namespace=namespace, reply_topic=shared, reply_partition=1) as client:
        answer = await client.generate("on partition one", model=MODEL)
        assert answer.text == "on partition one"
        assert client.channel.reading() == [(shared, 1)]


async def test_a_shared_reply_topic_that_does_not_exist_is_named(
    infra: Infra, namespace: str
) -> None:
    missing = shared_reply_topic("nobody-made-it", namespace)
    with pytest.raises(FleetError, match="does not exist") as info:
        async with infra.client(namespace=namespace, reply_topic=missing):
            pass
    assert missing in str(info.value)
    assert missing not in await topic_names(infra)
