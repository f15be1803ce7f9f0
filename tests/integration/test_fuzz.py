"""Every byte the fleet reads is untrusted: a thousand seeded mutations of SDK requests per
kind from three tenants weighted 2:1:1, with the cost headers a producer may write, the
static cases that once wedged or killed workers (depth bombs, bad reply addresses, bad retry
headers, a bomb on the control topic), all sent straight to real workers. Nothing may be
lost (each message is dead-lettered, answered, or a valid fire-and-forget job), nothing may
run twice (the ledger counts each start), every partition's committed offset reaches its
end, the workers keep running, and good requests are answered afterwards."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from contracts import (
    ChatMessage,
    ContentType,
    DeadLetterReason,
    EmbedRequest,
    GenerateRequest,
    RerankRequest,
    SpeechRequest,
    TranscribeRequest,
    VectorRecord,
    VectorUpsertRequest,
)
from contracts.codec import AnyRequest, decode_chunk, decode_request
from contracts.errors import ContractError
from contracts.names import (
    Header,
    control_topic,
    dead_letter_topic,
    parked_topic,
    request_topic,
    retry_topic,
)
from contracts.replies import Final
from producer_sdk import FleetClient
from providers.router import ModelRouter
from tests.conftest import REPO, Infra
from tests.integration.fuzz_messages import Headers, Mutator
from tests.integration.harness import Job, ledger_runs, serving
from tests.integration.scripted_chat import ScriptedChat
from transport.topic_reader import read_to_end
from workers import Worker, WorkerSettings, build_worker
from workers.handlers.generate import GenerateHandler
from workers.ops.inspect import consumer_lag
from workers.settings import FairnessSettings

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.model, pytest.mark.slow]

# Mutations per kind: a valid transcribe request runs Whisper, a valid speech request
# eSpeak NG, so those kinds get fewer; a rerank request's bytes are an embed request's
# with a query beside them, so it gets fewer too.
MUTATIONS = {
    "generate": 1000, "embed": 1000, "vectors": 1000, "transcribe": 300, "rerank": 100,
    "speech": 60,
}  # fmt: skip
EMBED_MODEL = "all-minilm-l6-v2"
RERANK_MODEL = "all-minilm-l6-v2-biencoder"
WHISPER_MODEL = "whisper-tiny.en"
VOICE = "espeak-ng"
SPEECH = (REPO / "workers/ops/assets/demo-speech.wav").read_bytes()
# Mutations come from three tenants, A weighted twice B and C and sending twice as many; the
# fair queue holds a few records beyond the slots, so they wait in it while the slots are full.
TENANTS = ("a", "b", "a", "c")
FAIRNESS = FairnessSettings(weights={"a": 2.0, "b": 1.0, "c": 1.0}, window=8)
# The `fleet-cost` header is the producer's word: the fair queue must start every job
# whatever it says (2**63 + 1 once left its credit unable to reach the cost).
COSTS = [b"1", b"40", b"0", b"-5", b"x", b"\xff", b"9" * 40, str(2**63 + 1).encode()]


@asynccontextmanager
async def _worker(kind: str, settings: WorkerSettings) -> AsyncIterator[Worker]:
    if kind == "generate":  # a scripted model: the fuzz is about bytes, not tokens
        handler = GenerateHandler(ModelRouter("chat", [ScriptedChat()]))
        worker = Worker("generate", settings, handler)
    else:
        worker = await build_worker(kind, settings)
    async with serving(worker):
        yield worker


async def _good_request(kind: str, client: FleetClient) -> None:
    if kind == "generate":
        assert (await client.generate("still there?", model="scripted-model")).text
    elif kind == "embed":
        assert len((await client.embed(["still there?"], model=EMBED_MODEL)).vectors) == 1
    elif kind == "vectors":
        record = VectorRecord(id="good", vector=[0.5, 0.5, 0.5])
        assert (await client.upsert("fuzz", [record])).upserted == 1
    elif kind == "rerank":
        assert len((await client.rerank("still?", ["yes", "no"], model=RERANK_MODEL)).results) == 2
    elif kind == "speech":
        assert (await client.speech("Still there?", model=VOICE, voice="alloy")).audio
    else:
        assert (await client.transcribe(SPEECH, model=WHISPER_MODEL)).text


def _base_request(kind: str, client: FleetClient) -> dict[str, Any]:
    deadline_ms = int((time.time() + 120) * 1000)
    request: (
        GenerateRequest
        | EmbedRequest
        | VectorUpsertRequest
        | TranscribeRequest
        | RerankRequest
        | SpeechRequest
    )
    if kind == "vectors":
        records = [VectorRecord(id="r1", vector=[0.1, 0.2, 0.3], metadata={"lang": "en"})]
        request = VectorUpsertRequest(
            request_id="base",
            reply_to=client.reply_address,
            deadline_ms=deadline_ms,
            collection="fuzz",
            records=records,
        )
    elif kind == "transcribe":
        request = TranscribeRequest(
            request_id="base",
            reply_to=client.reply_address,
            deadline_ms=deadline_ms,
            model=WHISPER_MODEL,
            audio=SPEECH,
        )
    elif kind == "rerank":
        request = RerankRequest(
            request_id="base",
            reply_to=client.reply_address,
            deadline_ms=deadline_ms,
            model=RERANK_MODEL,
            query="which one?",
            documents=["first text", {"text": "second text", "id": "2"}],
            top_n=1,
            return_documents=True,
        )
    elif kind == "speech":
        request = SpeechRequest(
            request_id="base",
            reply_to=client.reply_address,
            deadline_ms=deadline_ms,
            model=VOICE,
            input="Hi.",
            voice="alloy",
        )
    elif kind == "generate":
        request = GenerateRequest(
            request_id="base",
            reply_to=client.reply_address,
            deadline_ms=deadline_ms,
            model="scripted-model",
            messages=[ChatMessage(role="user", content="hi")],
            max_tokens=4,
        )
    else:
        request = EmbedRequest(
            request_id="base",
            reply_to=client.reply_address,
            deadline_ms=deadline_ms,
            model=EMBED_MODEL,
            texts=["first text", "second text"],
        )
    as_dict: dict[str, Any] = msgspec.to_builtins(request)
    return as_dict


def _from_tenant(mutator: Mutator, base: dict[str, Any], i: int) -> tuple[bytes, Headers]:
    """Mutation ``i`` of ``base`` sent by tenant TENANTS[i], stamped as the SDK would stamp
    it, with a cost from COSTS."""
    tenant = TENANTS[i % len(TENANTS)]
    value, headers = mutator.mutate({**base, "tenant": tenant}, i)
    stamped = [(Header.TENANT, tenant.encode()), (Header.COST, COSTS[i % len(COSTS)])]
    return value, headers + stamped


def _decoded(kind: str, value: bytes, headers: Headers) -> AnyRequest | None:
    """The request of ``kind`` a worker reads in the message (None where the contract
    refuses it)."""
    content_type = dict(headers).get(Header.CONTENT_TYPE)
    try:
        return decode_request(
            kind,
            value,
            content_type=content_type.decode("utf-8", "replace") if content_type else None,
        )
    except ContractError:
        return None


def _static_cases(kind: str, base: dict[str, Any], namespace: str) -> list[tuple[bytes, Headers]]:
    json_headers: Headers = [(Header.CONTENT_TYPE, ContentType.JSON.encode())]
    bomb_json = msgspec.json.encode({**base, "request_id": "static-bomb"})
    bomb_json = bomb_json[:-1] + b',"x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    cases: list[tuple[bytes, Headers]] = [
        (bomb_json, json_headers),
        (b"\x91" * 50_000 + b"\x90", []),
        (b"", []),
        (b"\x00" * 10, []),
        (b"{" * 10_000, json_headers),
    ]
    for i, address in enumerate(
        [
            {"topic": base["reply_to"]["topic"], "partition": 99},
            {"topic": base["reply_to"]["topic"], "partition": -1},
            {"topic": "garbage topic name!", "partition": 0},
            {"topic": f"{namespace}.v1.replies.nobody", "partition": 0},
            {"topic": "x" * 260, "partition": 0},
        ]
    ):
        body = {**base, "request_id": f"static-address-{i}", "reply_to": address}
        cases.append((msgspec.json.encode(body), json_headers))
    return cases


async def _read_all(infra: Infra, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Everything on ``topic`` now (the worker has settled: nothing more is coming)."""
    return [record async for record in read_to_end(infra.connection, topic)]


async def _settled(settings: WorkerSettings, kind: str, timeout_s: float = 120) -> list[str]:
    """Partitions whose committed offset has not reached the end (empty once settled): the
    lane's, and the park topic's (a tenant's excess parked there comes back to the lane,
    decision 0045). Settled when two looks in a row find nothing left, so that a record
    on its way back between the two topics is not missed."""
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while True:
        rows = [
            r for r in await consumer_lag(settings) if r.kind == kind and r.source == "interactive"
        ]
        stuck = [f"{r.partition}: {r.committed}/{r.end}" for r in rows if r.committed != r.end]
        stuck += await _parked_left(settings, kind)
        quiet = 0 if stuck else quiet + 1
        if quiet == 2 or time.monotonic() > deadline:
            return stuck
        await asyncio.sleep(0.25)


async def _parked_left(settings: WorkerSettings, kind: str) -> list[str]:
    """The park topic's partitions whose records its forwarders have not all moved back."""
    topic = parked_topic(kind, settings.namespace)
    group = settings.topology.parked_group(kind)
    admin = AIOKafkaAdminClient(**settings.connection.options())
    consumer = AIOKafkaConsumer(**settings.connection.options(), group_id=None)
    await admin.start()
    await consumer.start()
    try:
        (described,) = await admin.describe_topics([topic])
        partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        left = []
        for tp, end in ends.items():
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            if done != end:
                left.append(f"parked {tp.partition}: {done}/{end}")
        return left
    finally:
        await consumer.stop()
        await admin.close()


def _accounted(
    kind: str,
    value: bytes,
    headers: Headers,
    dead_lettered: bool,
    answered: set[str],
    reply_topic: str,
) -> bool:
    if dead_lettered:
        return True
    request = _decoded(kind, value, headers)
    if request is None:
        return False  # refused by the contract, yet not dead-lettered: lost
    if request.reply_to is None:
        return True  # fire and forget: it ran, nobody listens
    if request.reply_to.topic != reply_topic:
        return False  # it should have been refused as a bad address
    return request.request_id in answered


@pytest.mark.timeout(900)
@pytest.mark.parametrize("kind", list(MUTATIONS))
async def test_no_message_wedges_kills_or_is_lost(
    kind: str,
    settings: WorkerSettings,
    infra: Infra,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL, logger="aiokafka")  # metadata noise of bad topics
    caplog.set_level(logging.ERROR, logger="workers")
    # Last: the handler keeps this level, and the consumer logs every escape from the runner.
    caplog.set_level(logging.WARNING, logger="workers.runtime.consumer")
    settings = msgspec.structs.replace(settings, partitions=4, concurrency=16, fairness=FAIRNESS)
    producer = AIOKafkaProducer(**infra.kafka_options(), linger_ms=5)
    async with (
        _worker(kind, settings) as worker,
        infra.client(namespace=namespace, default_timeout_s=60) as client,
    ):
        await producer.start()
        # One good request first: the client's reply topic exists before any fuzz arrives.
        await _good_request(kind, client)
        try:
            base = _base_request(kind, client)
            mutator = Mutator(seed=14, namespace=namespace)
            messages = _static_cases(kind, base, namespace)
            messages += [_from_tenant(mutator, base, i) for i in range(MUTATIONS[kind])]
            topic = request_topic(kind, namespace)
            # Sent all at once (the producer batches them), then each one's offset is known.
            deliveries = [
                await producer.send(topic, value, key=f"k{i}".encode(), headers=headers)
                for i, (value, headers) in enumerate(messages)
            ]
            # Each message by where it was written, with its key: unique, and kept by a dead
            # letter, also of a record parked and written back at another offset.
            sent: dict[tuple[int, int], tuple[bytes, Headers, bytes]] = {
                (meta.partition, meta.offset): (value, headers, f"k{i}".encode())
                for i, (meta, (value, headers)) in enumerate(
                    zip(await asyncio.gather(*deliveries), messages, strict=True)
                )
            }
            # The control and retry topics are read by every worker: as untrusted.
            await producer.send_and_wait(control_topic(kind, namespace), b"\x91" * 50_000)
            await producer.send_and_wait(control_topic(kind, namespace), b'{"kind": 1}')
            bad_retry = [(Header.RETRY_NOT_BEFORE_MS, b"soon")]
            first_tier = retry_topic(kind, settings.retry.tiers_s[0], namespace)
            await producer.send_and_wait(
                first_tier, msgspec.msgpack.encode(base), headers=bad_retry
            )
        finally:
            await producer.stop()

        stuck = await _settled(settings, kind)
        # Good requests are answered afterwards, by the same (living) worker.
        await _good_request(kind, client)
        assert worker.ready.is_set()
        reply_topic = client.reply_address.topic
        replies = await _read_all(infra, reply_topic)  # before the client deletes it

    dead = await _read_all(infra, dead_letter_topic(kind, namespace))
    dead_keys = {
        r.key
        for r in dead
        if dict(r.headers)[Header.DLQ_SOURCE_TOPIC].decode() == request_topic(kind, namespace)
    }
    bad_headers = [
        r
        for r in dead
        if dict(r.headers)[Header.DLQ_SOURCE_TOPIC].decode() == first_tier
        and dict(r.headers)[Header.DLQ_REASON] == DeadLetterReason.BAD_HEADER.encode()
    ]
    control_dead = [
        r
        for r in dead
        if dict(r.headers)[Header.DLQ_SOURCE_TOPIC].decode() == control_topic(kind, namespace)
    ]
    answered = set()
    for record in replies:
        if Header.HEARTBEAT in dict(record.headers) or not record.value:
            continue
        chunk = decode_chunk(record.value, dict(record.headers)[Header.CONTENT_TYPE].decode())
        if isinstance(chunk, Final):
            answered.add(chunk.request_id)
    lost = [
        (where, value[:80])
        for where, (value, headers, key) in sent.items()
        if not _accounted(kind, value, headers, key in dead_keys, answered, reply_topic)
    ]
    # The requests that were no dead letter ran at most once each (a repeated request id
    # is answered from the ledger, not run).
    jobs: set[Job] = {
        (kind, request.tenant, request.request_id)
        for value, headers, key in sent.values()
        if key not in dead_keys and (request := _decoded(kind, value, headers)) is not None
    }
    runs = await ledger_runs(infra.redis_url, namespace, sorted(jobs))
    run_twice = sorted(job for job, count in runs.items() if count > 1)
    print(
        f"{kind}: {len(sent)} sent, {len(dead_keys)} dead-lettered, "
        f"{len(answered)} answered, {len(lost)} lost, "
        f"{sum(count == 1 for count in runs.values())} ran once, {len(run_twice)} twice, "
        f"stuck partitions: {stuck}"
    )
    assert stuck == []
    assert lost == [], lost[:5]
    assert run_twice == [], run_twice[:5]
    # Nothing escaped the runner (its consumer logs each escape as an error).
    escaped = [r.getMessage() for r in caplog.records if r.name == "workers.runtime.consumer"]
    assert escaped == [], escaped[:3]
    assert len(bad_headers) == 1  # the bad retry record: dead-lettered once
    assert len(control_dead) == 2  # both bad control messages, once each
