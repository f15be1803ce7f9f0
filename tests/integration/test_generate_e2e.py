"""A generate job end to end: SDK -> Kafka -> worker -> SmolLM2 -> Kafka -> SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contracts import ContentType, ErrorCode, GenerateResult, Header, TextDelta
from producer_sdk import FleetClient, FleetRequestError, GenerateEvent, StreamRestarted
from providers.memory.redis_memory import RedisMemory, RedisMemoryConfig
from tests.conftest import Infra
from tests.integration.conftest import MODEL, generate_worker_in, new_namespace
from tests.integration.harness import read_dead_letters
from workers import Worker

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.model]


# The module's tests share one namespace and so one generate worker: one model load and
# group join instead of one per test. Each test's requests have ids, sessions and reply
# topics of its own, and only the poison test's requests are dead-lettered.
@pytest.fixture(scope="module")
def namespace() -> str:
    return new_namespace()


@pytest.fixture(scope="module")
async def generate_worker(infra: Infra, namespace: str) -> AsyncIterator[Worker]:
    async with generate_worker_in(infra, namespace) as worker:
        yield worker


async def _collect(stream: object) -> list[GenerateEvent]:
    return [event async for event in stream]  # type: ignore[attr-defined]


async def test_streamed_answer_arrives_complete_and_in_order(
    generate_worker: Worker, client: FleetClient
) -> None:
    events = await _collect(
        client.stream_generate("Name three colours.", model=MODEL, max_tokens=24, temperature=0)
    )
    deltas = [e for e in events if isinstance(e, TextDelta)]
    final = events[-1]
    assert isinstance(final, GenerateResult)
    assert not any(isinstance(e, StreamRestarted) for e in events)
    assert len(deltas) >= 2, "the answer should stream in several chunks"
    assert [d.seq for d in deltas] == list(range(len(deltas)))
    assert final.seq == len(deltas)
    assert "".join(d.text for d in deltas) == final.text
    assert final.text.strip()
    assert final.usage.output_tokens == len(deltas)
    assert final.usage.input_tokens > 0
    assert final.model == MODEL


async def test_greedy_answers_are_reproducible_through_the_fleet(
    generate_worker: Worker, client: FleetClient
) -> None:
    first = await client.generate("Say hello.", model=MODEL, max_tokens=12, temperature=0)
    second = await client.generate("Say hello.", model=MODEL, max_tokens=12, temperature=0)
    assert first.text == second.text
    assert first.request_id != second.request_id


async def test_two_clients_each_receive_only_their_own_replies(
    generate_worker: Worker, infra: Infra, namespace: str
) -> None:
    async with (
        infra.client(namespace=namespace) as alice,
        infra.client(namespace=namespace) as bob,
    ):
        prompts = {"alice": "What is 2 + 2?", "bob": "Name a fruit."}
        streams = await asyncio.gather(
            _collect(
                alice.stream_generate(prompts["alice"], model=MODEL, max_tokens=16, temperature=0)
            ),
            _collect(
                bob.stream_generate(prompts["bob"], model=MODEL, max_tokens=16, temperature=0)
            ),
        )
        alice_ids = {e.request_id for e in streams[0]}
        bob_ids = {e.request_id for e in streams[1]}
        assert len(alice_ids) == 1
        assert len(bob_ids) == 1
        assert alice_ids != bob_ids
        assert alice.reply_address.topic != bob.reply_address.topic
        # Each client's reply topic carried nothing addressed to the other.
        assert alice.router.unrouted == 0
        assert bob.router.unrouted == 0
        for events in streams:
            assert isinstance(events[-1], GenerateResult)


async def test_unknown_model_gets_a_clear_error_reply(
    generate_worker: Worker, client: FleetClient
) -> None:
    with pytest.raises(FleetRequestError) as info:
        await client.generate("hi", model="gpt-imaginary", max_tokens=4)
    assert info.value.code is ErrorCode.NOT_FOUND
    assert "unknown chat model 'gpt-imaginary'" in str(info.value)
    assert MODEL in str(info.value)
    # The worker carries on.
    result = await client.generate("hi", model=MODEL, max_tokens=4)
    assert result.text


async def test_poison_messages_go_to_the_dead_letter_topic_and_the_worker_continues(
    generate_worker: Worker, client: FleetClient, infra: Infra, namespace: str
) -> None:
    topic = f"{namespace}.v1.generate.requests"
    producer = AIOKafkaProducer(**infra.kafka_options())
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"\xc1\xc1 not a request")
        # Schema violation with a readable reply address: the caller hears about it too.
        bad = json.dumps(
            {
                "kind": "generate",
                "request_id": "bad-1",
                "model": MODEL,
                "messages": [],
                "reply_to": {"topic": client.reply_address.topic, "partition": 0},
            }
        ).encode()
        inbox = client.router.open("bad-1")
        await producer.send_and_wait(
            topic, bad, headers=[(Header.CONTENT_TYPE, b"application/json")]
        )
        error = await asyncio.wait_for(inbox.get(), timeout=30)
    finally:
        await producer.stop()
    assert getattr(error, "code", None) is ErrorCode.INVALID_INPUT
    assert "messages" in getattr(error, "message", "")

    dead = await read_dead_letters(infra, namespace, expected=2)
    assert len(dead) == 2
    # The two may sit on different partitions: their dead letters come in either order.
    by_reason = {dict(r.headers)[Header.DLQ_REASON].decode(): r for r in dead}
    assert sorted(by_reason) == ["schema", "undecodable"]
    assert by_reason["undecodable"].value == b"\xc1\xc1 not a request"  # bytes kept
    assert dict(by_reason["schema"].headers)[Header.DLQ_SOURCE_TOPIC].decode() == topic

    result = await client.generate("Say yes.", model=MODEL, max_tokens=4)
    assert result.text


async def test_json_producers_get_json_replies(
    generate_worker: Worker, client: FleetClient, infra: Infra, namespace: str
) -> None:
    request = {
        "kind": "generate",
        "request_id": "json-1",
        "model": MODEL,
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "hi"}],
        "reply_to": {"topic": client.reply_address.topic, "partition": 0},
    }
    inbox = client.router.open("json-1")
    producer = AIOKafkaProducer(**infra.kafka_options())
    await producer.start()
    try:
        await producer.send_and_wait(
            f"{namespace}.v1.generate.requests", json.dumps(request).encode()
        )
    finally:
        await producer.stop()
    chunks: list[object] = []
    while not chunks or not isinstance(chunks[-1], GenerateResult):
        chunks.append(await asyncio.wait_for(inbox.get(), timeout=30))
    assert chunks[-1].request_id == "json-1"

    # On the wire the replies were JSON, marked as such.
    raw = AIOKafkaConsumer(**infra.kafka_options(), group_id=None)
    await raw.start()
    try:
        tp = TopicPartition(client.reply_address.topic, 0)
        raw.assign([tp])
        await raw.seek_to_beginning(tp)
        records = (await raw.getmany(tp, timeout_ms=5_000)).get(tp, [])
    finally:
        await raw.stop()
    replies = [r for r in records if Header.HEARTBEAT not in dict(r.headers)]
    assert replies
    for record in replies:
        assert dict(record.headers)[Header.CONTENT_TYPE] == ContentType.JSON.encode()
        assert json.loads(record.value)["request_id"] == "json-1"


async def test_session_memory_is_kept_per_tenant_in_redis(
    generate_worker: Worker, infra: Infra, namespace: str, redis_client: aioredis.Redis
) -> None:
    memory = RedisMemory(RedisMemoryConfig(), redis_client)
    session = f"s-{namespace}"
    async with infra.client(namespace=namespace, tenant="acme") as acme:
        await acme.generate("My name is Ada.", model=MODEL, max_tokens=8, session_id=session)
        second = await acme.generate(
            "What is my name?", model=MODEL, max_tokens=8, session_id=session
        )
        alone = await acme.generate("What is my name?", model=MODEL, max_tokens=8)
    turns = await memory.history("acme", session)
    assert [t.role for t in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[0].content == "My name is Ada."
    assert turns[3].content == second.text
    # The second call saw the first exchange: its prompt was longer than the question alone.
    assert second.usage.input_tokens > alone.usage.input_tokens
    assert await memory.history("other-tenant", session) == []
    await memory.clear("acme", session)
