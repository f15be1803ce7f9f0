"""Conversation memory in the real Redis: tenant isolation, windows by messages and tokens."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from contracts import ChatMessage, ToolCall
from contracts.content import ImagePart, ImageUrl, TextPart, text_of
from contracts.tokens import IMAGE_TOKENS, estimate_tokens
from providers.memory import MemoryStore
from providers.memory.redis_memory import RedisMemory, RedisMemoryConfig
from providers.redis_client import RedisClient
from tests.conformance.memory import MemoryStoreConformance

pytestmark = [pytest.mark.redis, pytest.mark.redis_cluster]


def _memory(
    redis: RedisClient, max_messages: int = 40, max_tokens: int | None = 2048
) -> RedisMemory:
    config = RedisMemoryConfig(
        key_prefix=f"fleet:test-memory:{uuid.uuid4().hex[:8]}",
        max_messages=max_messages,
        max_tokens=max_tokens,
    )
    return RedisMemory(config, redis)


def _turn(i: int, words: int = 3) -> list[ChatMessage]:
    return [
        ChatMessage(role="user", content=" ".join([f"q{i}"] * words)),
        ChatMessage(role="assistant", content=" ".join([f"a{i}"] * words)),
    ]


async def test_the_window_keeps_the_newest_messages(redis: RedisClient) -> None:
    memory = _memory(redis, max_messages=4, max_tokens=None)
    for i in range(5):
        await memory.append("t", "s", _turn(i))
    kept = await memory.history("t", "s")
    await memory.aclose()
    assert [text_of(m.content).split()[0] for m in kept] == ["q3", "a3", "q4", "a4"]


async def test_the_token_budget_drops_the_oldest_first(redis: RedisClient) -> None:
    memory = _memory(redis, max_messages=100, max_tokens=100)
    for i in range(10):
        await memory.append("t", "s", _turn(i, words=20))
    kept = await memory.history("t", "s")
    await memory.aclose()
    per_message = estimate_tokens(text_of(_turn(9, words=20)[0].content))
    assert len(kept) == 100 // per_message  # the newest ones that fit
    assert text_of(kept[-1].content).startswith("a9")


async def test_tenants_and_sessions_are_apart(redis: RedisClient) -> None:
    memory = _memory(redis)
    await memory.append("acme", "s1", _turn(1))
    assert await memory.history("other", "s1") == []
    assert await memory.history("acme", "s2") == []
    assert len(await memory.history("acme", "s1")) == 2
    await memory.clear("acme", "s1")
    assert await memory.history("acme", "s1") == []
    await memory.aclose()


CALL = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Oslo"}')
TOOL_TURNS = [
    ChatMessage(role="user", content="Weather in Oslo?"),
    ChatMessage(role="assistant", content="", tool_calls=[CALL]),
    ChatMessage(role="tool", content='{"temp": 3}', tool_call_id="call_1"),
    ChatMessage(role="assistant", content="3 degrees."),
]


async def test_tool_calls_and_results_are_kept(redis: RedisClient) -> None:
    memory = _memory(redis)
    await memory.append("t", "s", TOOL_TURNS[:2], turn_id="job-1")
    await memory.append("t", "s", TOOL_TURNS[2:], turn_id="job-2")
    assert await memory.history("t", "s") == TOOL_TURNS
    await memory.aclose()


async def test_a_window_that_cuts_a_call_from_its_result_drops_the_result(
    redis: RedisClient,
) -> None:
    memory = _memory(redis, max_messages=2, max_tokens=None)
    await memory.append("t", "s", TOOL_TURNS)
    assert await memory.history("t", "s") == TOOL_TURNS[3:]  # not the orphaned tool result
    await memory.aclose()


PICTURE_TURNS = [
    ChatMessage(
        role="user",
        content=[
            TextPart(text="What is in it?"),
            ImagePart(image_url=ImageUrl(url="data:image/png;base64,iVBORw0KGgo=", detail="low")),
        ],
    ),
    ChatMessage(role="assistant", content=[TextPart(text="A cat.")]),
]


async def test_content_parts_are_kept_as_parts(redis: RedisClient) -> None:
    memory = _memory(redis)
    await memory.append("t", "s", PICTURE_TURNS, turn_id="job-1")
    assert await memory.history("t", "s") == PICTURE_TURNS
    await memory.aclose()


async def test_an_image_counts_against_the_token_budget(redis: RedisClient) -> None:
    memory = _memory(redis, max_tokens=IMAGE_TOKENS)  # not the picture and its answer
    await memory.append("t", "s", PICTURE_TURNS)
    assert await memory.history("t", "s") == PICTURE_TURNS[1:]
    await memory.aclose()


class TestConformance(MemoryStoreConformance):
    @pytest.fixture
    async def store(self, redis: RedisClient) -> AsyncIterator[MemoryStore]:
        memory = _memory(redis)
        yield memory
        await memory.aclose()
