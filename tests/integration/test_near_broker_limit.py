"""Every input ends, against the real broker and one worker in-process: a request 230
bytes under the broker's message.max.bytes (written raw, as a foreign producer would, past
the SDK's check) is answered `invalid_input` with its size and dead-lettered as a pointer,
a 20 MB one and an unreadable request id are refused by the SDK before sending, and the
request partitions' commits reach their end."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts import ChatMessage, ErrorCode, ErrorReply, GenerateRequest
from contracts.codec import encode
from contracts.errors import ContractViolation
from contracts.names import ContentType, Header, request_topic
from producer_sdk import FleetClient, RequestRefused
from providers.router import ModelRouter
from tests.conftest import Infra
from tests.integration.harness import read_dead_letters, serving
from tests.integration.scripted_chat import ScriptedChat
from workers import Worker, WorkerSettings
from workers.handlers.generate import GenerateHandler
from workers.ops.inspect import consumer_lag

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

MODEL = "scripted-model"
# How far under the broker's limit the request is: it fits, its dead letter does not.
UNDER_THE_LIMIT = 230


async def _broker_limit(infra: Infra) -> int:
    """The broker's message.max.bytes, as it says (the request topics set none of their own)."""
    admin = AIOKafkaAdminClient(**infra.kafka_options())
    await admin.start()
    try:
        brokers = (await admin.describe_cluster())["brokers"]
        resource = ConfigResource(ConfigResourceType.BROKER, str(brokers[0]["node_id"]))
        (response,) = await admin.describe_configs([resource])
        entries = response.to_object()["resources"][0]["config_entries"]
        return next(
            int(e["config_value"]) for e in entries if e["config_names"] == "message.max.bytes"
        )
    finally:
        await admin.close()


def _request_of(size: int, client: FleetClient) -> bytes:
    """A generate request of ``size`` bytes exactly, to be answered on ``client``'s topic."""

    def with_text(length: int) -> bytes:
        request = GenerateRequest(
            request_id="near-the-limit",
            model=MODEL,
            messages=[ChatMessage(role="user", content="x" * length)],
            reply_to=client.reply_address,
        )
        return encode(request)

    value = with_text(2 * size - len(with_text(size)))  # the length prefix is the same
    assert len(value) == size
    return value


async def _committed_to_the_end(settings: WorkerSettings) -> int:
    """Wait until the worker has committed every request partition to its end; the records
    the request topic holds."""
    async with asyncio.timeout(30):
        while True:
            rows = [r for r in await consumer_lag(settings) if r.source == "interactive"]
            if rows and all((r.committed or 0) == r.end for r in rows):
                return sum(r.end for r in rows)
            await asyncio.sleep(0.1)


async def test_requests_near_and_over_the_broker_limit_each_end_with_a_typed_error(
    settings: WorkerSettings, infra: Infra
) -> None:
    ns = settings.namespace
    worker = Worker("generate", settings, GenerateHandler(ModelRouter("chat", [ScriptedChat()])))
    async with serving(worker), infra.client(namespace=ns, default_timeout_s=30) as client:
        with pytest.raises(RequestRefused) as oversized:
            await client.generate("x" * 20_000_000, model=MODEL)
        assert oversized.value.reason is ContractViolation.OVERSIZED
        assert "20000" in str(oversized.value)
        with pytest.raises(RequestRefused) as unreadable:
            await client.generate("hi", model=MODEL, request_id="order 42/x")
        assert unreadable.value.reason is ContractViolation.SCHEMA

        limit = await _broker_limit(infra)
        value = _request_of(limit - UNDER_THE_LIMIT, client)
        inbox = client.router.open("near-the-limit")
        producer = AIOKafkaProducer(**infra.kafka_options(), max_request_size=2 * limit)
        await producer.start()
        try:
            await producer.send_and_wait(
                request_topic("generate", ns),
                value,
                key=b"near-the-limit",
                headers=[(Header.CONTENT_TYPE, ContentType.MSGPACK.encode())],
            )
        finally:
            await producer.stop()
        reply = await asyncio.wait_for(inbox.get(), timeout=30)
        client.router.close(inbox)
        assert isinstance(reply, ErrorReply)
        assert reply.code is ErrorCode.INVALID_INPUT
        assert f"{len(value)} bytes" in reply.message

        # The partitions move on: a request behind it is answered, and every record of the
        # request topic is committed (the two sent; the refused ones never went out).
        assert (await client.generate("after it", model=MODEL)).text
        assert await _committed_to_the_end(settings) == 2

    (letter,) = await read_dead_letters(infra, ns, expected=1)
    headers = {k: bytes(v) for k, v in letter.headers}
    assert letter.value == b""
    assert headers[Header.DLQ_REASON] == ContractViolation.OVERSIZED.value.encode()
    assert headers[Header.DLQ_ORIGINAL_BYTES] == str(len(value)).encode()
    assert headers[Header.DLQ_ORIGINAL_SHA256] == hashlib.sha256(value).hexdigest().encode()
