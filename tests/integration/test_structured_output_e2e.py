"""Structured output and content parts through the fleet: SDK -> Kafka -> worker -> SmolLM2
(grammar-constrained) -> Kafka -> SDK, with the session's parts in Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import jsonschema
import pytest
import redis.asyncio as aioredis

from contracts import (
    ChatMessage,
    ErrorCode,
    ImagePart,
    ImageUrl,
    JsonSchemaSpec,
    ResponseFormatJsonSchema,
    TextPart,
)
from producer_sdk import FleetClient, FleetRequestError
from providers.memory.redis_memory import RedisMemory, RedisMemoryConfig
from tests.conftest import Infra
from tests.integration.conftest import MODEL, generate_worker_in, new_namespace
from workers import Worker

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.model]


# The module's tests share one namespace and so one generate worker: one model load and
# group join instead of one per test. Each test's requests have ids, sessions and reply
# topics of its own.
@pytest.fixture(scope="module")
def namespace() -> str:
    return new_namespace()


@pytest.fixture(scope="module")
async def generate_worker(infra: Infra, namespace: str) -> AsyncIterator[Worker]:
    async with generate_worker_in(infra, namespace) as worker:
        yield worker


CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}
AS_CITY = ResponseFormatJsonSchema(json_schema=JsonSchemaSpec(name="city", schema=CITY))


async def test_a_schema_constrained_answer_arrives_valid(
    generate_worker: Worker, client: FleetClient
) -> None:
    result = await client.generate(
        "Name a large city and its population.",
        model=MODEL,
        response_format=AS_CITY,
        max_tokens=48,
        temperature=0,
    )
    jsonschema.validate(json.loads(result.text), CITY)
    assert result.finish_reason == "stop"


async def test_an_answer_cut_off_before_the_json_ends_is_output_invalid(
    generate_worker: Worker, client: FleetClient
) -> None:
    with pytest.raises(FleetRequestError) as info:
        await client.generate(
            "Name a large city and its population.",
            model=MODEL,
            response_format=AS_CITY,
            max_tokens=3,
            temperature=0,
        )
    assert info.value.code is ErrorCode.OUTPUT_INVALID
    assert not info.value.retryable
    assert "cut off at max_tokens" in str(info.value)


async def test_an_image_for_a_model_without_vision_is_refused(
    generate_worker: Worker, client: FleetClient
) -> None:
    look = ChatMessage(
        role="user",
        content=[
            TextPart(text="What is in this picture?"),
            ImagePart(image_url=ImageUrl(url="https://example.com/cat.png")),
        ],
    )
    with pytest.raises(FleetRequestError) as info:
        await client.generate([look], model=MODEL, max_tokens=8)
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert "does not support images" in str(info.value)


async def test_the_session_keeps_text_parts_as_parts(
    generate_worker: Worker, infra: Infra, namespace: str, redis_client: aioredis.Redis
) -> None:
    memory = RedisMemory(RedisMemoryConfig(), redis_client)
    session = f"parts-{namespace}"
    parts = [TextPart(text="My name is "), TextPart(text="Ada.")]
    async with infra.client(namespace=namespace, tenant="acme") as acme:
        first = await acme.generate(
            [ChatMessage(role="user", content=parts)],
            model=MODEL,
            max_tokens=8,
            session_id=session,
        )
    turns = await memory.history("acme", session)
    assert [t.role for t in turns] == ["user", "assistant"]
    assert turns[0].content == parts
    assert turns[1].content == first.text
    await memory.clear("acme", session)
