"""A tool loop through the fleet: the model asks for tools, the caller answers with tool
messages in the same session, the model answers. Real Kafka and Redis; the model's side is
the OpenAI-compatible provider replaying recorded streams (tests/fixtures/http)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis

from contracts import ErrorCode
from producer_sdk import (
    ChatMessage,
    FleetClient,
    FleetRequestError,
    GenerateResult,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
)
from providers.chat.openai_compat import OpenAIChat, OpenAIChatConfig
from providers.memory.redis_memory import RedisMemory, RedisMemoryConfig
from providers.registry import parse_config
from providers.router import ModelRouter
from tests.integration.harness import serving
from tests.unit.providers import API_KEY, Replay
from workers import Worker, WorkerSettings
from workers.handlers.generate import GenerateHandler

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

MODEL = "gpt-4o-mini"
TOOLS = [
    ToolSpec(
        name="get_weather",
        description="Current weather in a city",
        parameters={"type": "object", "properties": {"city": {"type": "string"}}},
    ),
    ToolSpec(name="get_time", parameters={"type": "object", "properties": {"tz": {}}}),
]
QUESTION = "Weather in Oslo and Bergen, and the time in Oslo?"
RESULTS = {"get_weather": ['{"temp": 3}', '{"temp": 6}'], "get_time": ['"14:05"']}


@asynccontextmanager
async def fleet_with(
    settings: WorkerSettings, replay: Replay, redis_client: aioredis.Redis, **config: Any
) -> AsyncIterator[Worker]:
    raw = {"api_key": API_KEY, "models": [MODEL], **config}
    chat = OpenAIChat(parse_config("openai", raw, OpenAIChatConfig), transport=replay.transport())
    memory = RedisMemory(
        RedisMemoryConfig(key_prefix=f"fleet:test-tools:{uuid.uuid4().hex[:8]}"), redis_client
    )
    handler = GenerateHandler(ModelRouter("chat", [chat]), memory)
    async with serving(Worker("generate", settings, handler)) as worker:
        yield worker


def _answers(calls: list[ToolCall]) -> list[ChatMessage]:
    left = {name: list(results) for name, results in RESULTS.items()}
    return [
        ChatMessage(role="tool", content=left[call.name].pop(0), tool_call_id=call.id)
        for call in calls
    ]


def _joined(deltas: list[ToolCallDelta]) -> list[ToolCall]:
    """The calls as a caller puts them together from the deltas alone."""
    calls: dict[int, dict[str, str]] = {}
    for delta in deltas:
        call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
        call["id"] = delta.id or call["id"]
        call["name"] = delta.name or call["name"]
        call["arguments"] += delta.arguments
    return [ToolCall(**calls[i]) for i in sorted(calls)]


async def test_a_tool_loop_runs_over_two_jobs_of_one_session(
    settings: WorkerSettings, client: FleetClient, redis_client: aioredis.Redis
) -> None:
    replay = (
        Replay()
        .sse("openai/chat_stream_parallel_tools.sse")
        .sse("openai/chat_stream_after_tools.sse")
    )
    session = f"tools-{uuid.uuid4().hex[:8]}"
    async with fleet_with(settings, replay, redis_client):
        events = [
            event
            async for event in client.stream_generate(
                QUESTION, model=MODEL, session_id=session, tools=TOOLS, tool_choice="auto"
            )
        ]
        asked = events[-1]
        assert isinstance(asked, GenerateResult)
        assert asked.finish_reason == "tool_calls"
        assert asked.tool_calls is not None
        assert [c.name for c in asked.tool_calls] == ["get_weather", "get_weather", "get_time"]
        deltas = [e for e in events if isinstance(e, ToolCallDelta)]
        assert len(deltas) > 3 * 8  # streamed as the model wrote them
        assert _joined(deltas) == asked.tool_calls
        assert not any(isinstance(e, TextDelta) for e in events)
        assert (asked.usage.prompt_tokens, asked.usage.cached_tokens) == (1310, 1152)

        answer = await client.generate(
            _answers(asked.tool_calls), model=MODEL, session_id=session, tools=TOOLS
        )
    assert answer.finish_reason == "stop"
    assert answer.text == "It is 3 °C in Oslo and 6 °C in Bergen; in Oslo it is 14:05."
    assert answer.tool_calls is None
    assert answer.usage.total_tokens == 1472

    first, second = (json.loads(request.content) for request in replay.requests)
    assert first["tool_choice"] == "auto"
    assert "tool_choice" not in second
    # The second job's model call held the whole loop: the question and the assistant's
    # calls from the session's memory, then the caller's results.
    sent = second["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool", "tool"]
    assert sent[0]["content"] == QUESTION
    assert [c["id"] for c in sent[1]["tool_calls"]] == [c.id for c in asked.tool_calls]
    assert [c["function"]["arguments"] for c in sent[1]["tool_calls"]] == [
        c.arguments for c in asked.tool_calls
    ]
    assert [m["tool_call_id"] for m in sent[2:]] == [c.id for c in asked.tool_calls]


async def test_what_a_provider_lacks_is_refused_not_dropped(
    settings: WorkerSettings, client: FleetClient, redis_client: aioredis.Redis
) -> None:
    replay = Replay().sse("openai/chat_stream.sse")
    async with fleet_with(settings, replay, redis_client, tools=False, options=["user"]):
        with pytest.raises(FleetRequestError) as info:
            await client.generate(QUESTION, model=MODEL, tools=TOOLS)
        assert info.value.code is ErrorCode.INVALID_INPUT
        assert "it does not support tools" in str(info.value)
        with pytest.raises(FleetRequestError) as info:
            await client.generate(QUESTION, model=MODEL, seed=1)
        assert info.value.code is ErrorCode.INVALID_INPUT
        assert "it does not support seed" in str(info.value)
        assert replay.requests == []
        answer = await client.generate(QUESTION, model=MODEL, user="u-81")
    assert answer.text == "Hello! How can I help?"
    assert json.loads(replay.requests[0].content)["user"] == "u-81"
