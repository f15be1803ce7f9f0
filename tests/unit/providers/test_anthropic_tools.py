"""The Anthropic provider's tools, tool choice and sampling fields, against recorded Messages
streams: parallel tool_use blocks after text, input in many input_json_delta pieces."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts.errors import ErrorCode
from contracts.generate import ChatMessage, NamedToolChoice, ToolCall, ToolChoice, ToolSpec
from providers.chat.anthropic import AnthropicChat, AnthropicChatConfig
from providers.chat.base import ChatDone, ChatEvent, ChatParams, TextPiece, ToolCallPiece
from providers.errors import ProviderError
from providers.registry import parse_config
from tests.unit.providers import API_KEY, FakeClock, FakeSleep, Replay

MODEL = "claude-sonnet-4-5"
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather in a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)
ASK = [ChatMessage(role="user", content="Weather in Oslo and Bergen?")]
CALLS = [
    ToolCall(
        id="toolu_01A9fKq3Wm7Xv2Ns5Ry8Tb4L",
        name="get_weather",
        arguments='{"city": "Oslo", "unit": "celsius"}',
    ),
    ToolCall(
        id="toolu_01P6cJx0Hd4Zt9Lw3Qe7Vn2M",
        name="get_weather",
        arguments='{"city": "Bergen", "unit": "celsius"}',
    ),
]


def make(replay: Replay) -> AnthropicChat:
    config = parse_config("anthropic", {"api_key": API_KEY, "models": [MODEL]}, AnthropicChatConfig)
    return AnthropicChat(config, transport=replay.transport(), sleep=FakeSleep(), clock=FakeClock())


async def events_of(
    replay: Replay, params: ChatParams, messages: list[ChatMessage] = ASK
) -> list[ChatEvent]:
    provider = make(replay)
    try:
        return [event async for event in provider.stream_chat(messages, params)]
    finally:
        await provider.aclose()


def body_of(replay: Replay) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(replay.requests[0].content)
    return parsed


async def test_parallel_tool_use_blocks_stream_as_pieces_numbered_from_zero() -> None:
    replay = Replay().sse("anthropic/messages_stream_parallel_tools.sse", chunk_size=29)
    events = await events_of(replay, ChatParams(model=MODEL, tools=[WEATHER]))

    text = "".join(e.text for e in events if isinstance(e, TextPiece))
    assert text == "I'll check both cities."
    pieces = [e for e in events if isinstance(e, ToolCallPiece)]
    # The text block is block 0; the calls are tool calls 0 and 1 all the same.
    assert sorted({p.index for p in pieces}) == [0, 1]
    for index, call in enumerate(CALLS):
        own = [p for p in pieces if p.index == index]
        assert len(own) > 5, "the input comes in many pieces"
        assert (own[0].id, own[0].name, own[0].arguments) == (call.id, call.name, "")
        assert "".join(p.arguments for p in own) == call.arguments
    first_piece = next(i for i, e in enumerate(events) if isinstance(e, ToolCallPiece))
    assert all(isinstance(e, TextPiece) for e in events[:first_piece])
    done = events[-1]
    assert isinstance(done, ChatDone)
    assert done.finish_reason == "tool_calls"
    assert done.tool_calls == CALLS
    # input_tokens (38) leaves out what was read from the cache (1536); the job used both.
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (38 + 1536, 112)
    assert done.usage.cached_tokens == 1536
    assert done.usage.reasoning_tokens is None


async def test_the_results_of_parallel_calls_go_back_in_one_user_turn() -> None:
    replay = Replay().sse("anthropic/messages_stream.sse")
    loop = [
        *ASK,
        ChatMessage(role="assistant", content="I'll check both cities.", tool_calls=CALLS),
        ChatMessage(role="tool", content="3 degrees", tool_call_id=CALLS[0].id),
        ChatMessage(role="tool", content="6 degrees", tool_call_id=CALLS[1].id),
    ]
    await events_of(replay, ChatParams(model=MODEL, tools=[WEATHER]), loop)
    messages = body_of(replay)["messages"]
    assert len(messages) == 3
    assert messages[1]["content"][1:] == [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": json.loads(c.arguments)}
        for c in CALLS
    ]
    assert messages[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": CALLS[0].id, "content": "3 degrees"},
            {"type": "tool_result", "tool_use_id": CALLS[1].id, "content": "6 degrees"},
        ],
    }


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        (NamedToolChoice(name="get_weather"), {"type": "tool", "name": "get_weather"}),
    ],
)
async def test_tool_choice_is_sent_in_the_apis_words(
    choice: ToolChoice, sent: dict[str, str]
) -> None:
    replay = Replay().sse("anthropic/messages_stream_parallel_tools.sse")
    await events_of(replay, ChatParams(model=MODEL, tools=[WEATHER], tool_choice=choice))
    assert body_of(replay)["tool_choice"] == sent


async def test_the_user_goes_in_metadata() -> None:
    replay = Replay().sse("anthropic/messages_stream.sse")
    await events_of(replay, ChatParams(model=MODEL, user="u-81"))
    assert body_of(replay)["metadata"] == {"user_id": "u-81"}


@pytest.mark.parametrize(
    ("field", "params"),
    [
        ("seed", ChatParams(model=MODEL, seed=3)),
        ("presence_penalty", ChatParams(model=MODEL, presence_penalty=0.5)),
        ("frequency_penalty", ChatParams(model=MODEL, frequency_penalty=0.5)),
    ],
)
async def test_fields_the_messages_api_lacks_are_refused_by_name(
    field: str, params: ChatParams
) -> None:
    replay = Replay().sse("anthropic/messages_stream.sse")
    with pytest.raises(ProviderError) as info:
        await events_of(replay, params)
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert f"it does not support {field}" in info.value.detail
    assert replay.requests == []
