"""The generate handler on its own (no broker): what reaches the provider, which chunks come
out for streamed and whole answers with tool calls, and refusals before any call."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts import (
    ChatMessage,
    ErrorCode,
    GenerateRequest,
    GenerateResult,
    NamedToolChoice,
    ReplyChunk,
    ToolCallDelta,
    ToolSpec,
)
from providers.chat.fallback import FallbackChat
from providers.chat.openai_compat import OpenAIChat, OpenAIChatConfig
from providers.errors import ProviderError
from providers.registry import parse_config
from providers.router import ModelRouter
from tests.integration.scripted_chat import ScriptedChat
from tests.unit.providers import API_KEY, FakeClock, FakeSleep, Replay
from workers.handlers.generate import GenerateHandler
from workers.handlers.reply_stream import ChunkStamper

MODEL = "gpt-4o-mini"
TOOLS = [ToolSpec(name="get_weather"), ToolSpec(name="get_time")]


def handler_over(replay: Replay) -> GenerateHandler:
    config = parse_config("openai", {"api_key": API_KEY, "models": [MODEL]}, OpenAIChatConfig)
    chat = OpenAIChat(config, transport=replay.transport(), sleep=FakeSleep(), clock=FakeClock())
    return GenerateHandler(ModelRouter("chat", [chat]))


def request(**fields: Any) -> GenerateRequest:
    return GenerateRequest(
        request_id="r1",
        model=MODEL,
        messages=[ChatMessage(role="user", content="Weather in Oslo and Bergen?")],
        **fields,
    )


async def chunks_of(handler: GenerateHandler, job: GenerateRequest) -> list[ReplyChunk]:
    try:
        return [chunk async for chunk in handler.handle(job, ChunkStamper("r1", 0))]
    finally:
        await handler.aclose()


async def test_a_streamed_answer_with_tool_calls_sends_deltas_then_the_calls() -> None:
    replay = Replay().sse("openai/chat_stream_parallel_tools.sse")
    job = request(tools=TOOLS, tool_choice=NamedToolChoice(name="get_weather"), seed=5)
    chunks = await chunks_of(handler_over(replay), job)
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert all(isinstance(c, ToolCallDelta) for c in chunks[:-1])
    final = chunks[-1]
    assert isinstance(final, GenerateResult)
    assert final.finish_reason == "tool_calls"
    assert final.tool_calls is not None
    assert len(final.tool_calls) == 3
    body = json.loads(replay.requests[0].content)
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["seed"] == 5
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather", "get_time"]


async def test_a_whole_answer_brings_the_calls_in_the_result_alone() -> None:
    replay = Replay().sse("openai/chat_stream_parallel_tools.sse")
    chunks = await chunks_of(handler_over(replay), request(tools=TOOLS, stream=False))
    assert len(chunks) == 1
    final = chunks[0]
    assert isinstance(final, GenerateResult)
    assert final.seq == 0
    assert final.tool_calls is not None
    assert [c.name for c in final.tool_calls] == ["get_weather", "get_weather", "get_time"]


@pytest.mark.parametrize(
    ("fields", "lacking"),
    [
        ({"tools": TOOLS}, "tools"),
        ({"seed": 1}, "seed"),
        ({"presence_penalty": 0.1}, "presence_penalty"),
        ({"frequency_penalty": 0.1}, "frequency_penalty"),
        ({"user": "u"}, "user"),
    ],
)
async def test_any_provider_is_held_to_its_capabilities(
    fields: dict[str, Any], lacking: str
) -> None:
    chat = ScriptedChat()  # declares neither tools nor options, and checks nothing itself
    handler = GenerateHandler(ModelRouter("chat", [chat]))
    job = GenerateRequest(
        request_id="r1",
        model="scripted-model",
        messages=[ChatMessage(role="user", content="hi")],
        **fields,
    )
    with pytest.raises(ProviderError) as info:
        await chunks_of(handler, job)
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert f"it does not support {lacking}" in info.value.detail
    assert chat.calls == 0


async def test_the_result_names_the_substitute_that_answered_for_a_fallback() -> None:
    down = Replay().json(500, "openai/error_500.json")
    stand_in = Replay().sse("openai/chat_stream.sse")

    def openai(name: str, replay: Replay, model: str) -> OpenAIChat:
        raw = {"name": name, "models": [model], "retry": {"max_attempts": 1}}
        config = parse_config(name, raw, OpenAIChatConfig)
        return OpenAIChat(
            config, transport=replay.transport(), sleep=FakeSleep(), clock=FakeClock()
        )

    chain = FallbackChat(
        [openai("hosted", down, "big-model"), openai("stand-in", stand_in, MODEL)],
        substitutes=[None, MODEL],
    )
    job = GenerateRequest(
        request_id="r1", model="big-model", messages=[ChatMessage(role="user", content="hi")]
    )
    chunks = await chunks_of(GenerateHandler(ModelRouter("chat", [chain])), job)
    final = chunks[-1]
    assert isinstance(final, GenerateResult)
    assert final.model == MODEL, "the model that answered, not the one asked for"
    assert final.text
    assert len(down.requests) == len(stand_in.requests) == 1
    assert json.loads(stand_in.requests[0].content)["model"] == MODEL


async def test_a_session_on_a_worker_without_memory_is_refused_before_the_call() -> None:
    chat = ScriptedChat()
    handler = GenerateHandler(ModelRouter("chat", [chat]))  # no memory
    job = GenerateRequest(
        request_id="r1",
        model="scripted-model",
        messages=[ChatMessage(role="user", content="hi")],
        session_id="s1",
    )
    with pytest.raises(ProviderError) as info:
        await chunks_of(handler, job)
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert "session_id needs conversation memory" in info.value.detail
    assert chat.calls == 0
