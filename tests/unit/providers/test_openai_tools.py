"""The OpenAI-compatible chat provider's tools, tool choice and sampling fields, against
recorded Chat Completions streams: parallel calls, arguments in many deltas, usage details."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts.errors import ErrorCode
from contracts.generate import ChatMessage, NamedToolChoice, ToolCall, ToolChoice, ToolSpec
from providers.chat.base import ChatDone, ChatEvent, ChatParams, TextPiece, ToolCallPiece
from providers.chat.openai_compat import OpenAIChat, OpenAIChatConfig
from providers.errors import ProviderError
from providers.registry import parse_config
from tests.unit.providers import API_KEY, FakeClock, FakeSleep, Replay

MODEL = "gpt-4o-mini"
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather in a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city"],
    },
)
TIME = ToolSpec(name="get_time", parameters={"type": "object", "properties": {}})
ASK = [ChatMessage(role="user", content="Weather in Oslo and Bergen, and the time in Oslo?")]
PARALLEL_CALLS = [
    ToolCall(
        id="call_7QhYzNwGrB2kXc5JvD3mTs0a",
        name="get_weather",
        arguments='{"city": "Oslo", "unit": "celsius"}',
    ),
    ToolCall(
        id="call_Kp4nW8eRy1uT6oZs9AqLb2Hd",
        name="get_weather",
        arguments='{"city": "Bergen", "unit": "celsius"}',
    ),
    ToolCall(
        id="call_M3vXc0JfT9gQ2sLr8YeNb5Kw", name="get_time", arguments='{"tz": "Europe/Oslo"}'
    ),
]


def make(replay: Replay, **overrides: Any) -> OpenAIChat:
    raw: dict[str, Any] = {"api_key": API_KEY, "models": [MODEL], **overrides}
    config = parse_config("openai", raw, OpenAIChatConfig)
    return OpenAIChat(config, transport=replay.transport(), sleep=FakeSleep(), clock=FakeClock())


async def events_of(
    replay: Replay, params: ChatParams, messages: list[ChatMessage] = ASK, **overrides: Any
) -> list[ChatEvent]:
    provider = make(replay, **overrides)
    try:
        return [event async for event in provider.stream_chat(messages, params)]
    finally:
        await provider.aclose()


def body_of(replay: Replay, n: int = 0) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(replay.requests[n].content)
    return parsed


async def test_parallel_calls_split_across_many_deltas_stream_as_pieces_and_assemble() -> None:
    replay = Replay().sse("openai/chat_stream_parallel_tools.sse", chunk_size=23)
    params = ChatParams(model=MODEL, tools=[WEATHER, TIME])
    events = await events_of(replay, params)

    pieces = [e for e in events if isinstance(e, ToolCallPiece)]
    assert not any(isinstance(e, TextPiece) for e in events)
    assert len(pieces) > 3 * 8, "each call's arguments come in many deltas"
    for index, call in enumerate(PARALLEL_CALLS):
        own = [p for p in pieces if p.index == index]
        assert (own[0].id, own[0].name) == (call.id, call.name)
        assert all(p.id is None and p.name is None for p in own[1:])
        assert "".join(p.arguments for p in own) == call.arguments
    done = events[-1]
    assert isinstance(done, ChatDone)
    assert done.finish_reason == "tool_calls"
    assert done.tool_calls == PARALLEL_CALLS
    usage = done.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1310, 71, 1381)
    assert (usage.cached_tokens, usage.reasoning_tokens) == (1152, 0)
    assert (usage.input_tokens, usage.output_tokens) == (1310, 71)  # the deprecated names

    body = body_of(replay)
    assert [tool["function"]["name"] for tool in body["tools"]] == ["get_weather", "get_time"]
    assert body["tools"][0] == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": WEATHER.parameters,
        },
    }
    assert "tool_choice" not in body  # the server's default


async def test_the_results_of_parallel_calls_go_back_as_tool_messages() -> None:
    replay = Replay().sse("openai/chat_stream_after_tools.sse")
    loop = [
        *ASK,
        ChatMessage(role="assistant", content="", tool_calls=PARALLEL_CALLS),
        *(
            ChatMessage(role="tool", content=result, tool_call_id=call.id)
            for call, result in zip(
                PARALLEL_CALLS, ['{"temp": 3}', '{"temp": 6}', '"14:05"'], strict=True
            )
        ),
    ]
    events = await events_of(replay, ChatParams(model=MODEL, tools=[WEATHER, TIME]), loop)
    text = "".join(e.text for e in events if isinstance(e, TextPiece))
    assert text == "It is 3 °C in Oslo and 6 °C in Bergen; in Oslo it is 14:05."
    done = events[-1]
    assert isinstance(done, ChatDone)
    assert (done.finish_reason, done.tool_calls) == ("stop", None)
    assert done.usage.cached_tokens == 1280

    sent = body_of(replay)["messages"]
    assert sent[1]["content"] is None
    assert [c["id"] for c in sent[1]["tool_calls"]] == [c.id for c in PARALLEL_CALLS]
    assert sent[2:] == [
        {"role": "tool", "content": '{"temp": 3}', "tool_call_id": PARALLEL_CALLS[0].id},
        {"role": "tool", "content": '{"temp": 6}', "tool_call_id": PARALLEL_CALLS[1].id},
        {"role": "tool", "content": '"14:05"', "tool_call_id": PARALLEL_CALLS[2].id},
    ]


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        (
            NamedToolChoice(name="get_time"),
            {"type": "function", "function": {"name": "get_time"}},
        ),
    ],
)
async def test_tool_choice_is_sent_in_the_apis_words(choice: ToolChoice, sent: object) -> None:
    replay = Replay().sse("openai/chat_stream_parallel_tools.sse")
    await events_of(replay, ChatParams(model=MODEL, tools=[WEATHER, TIME], tool_choice=choice))
    assert body_of(replay)["tool_choice"] == sent


async def test_seed_penalties_and_user_are_passed_on() -> None:
    replay = Replay().sse("openai/chat_stream.sse")
    params = ChatParams(
        model=MODEL, seed=7, presence_penalty=0.4, frequency_penalty=-0.3, user="u-81"
    )
    await events_of(replay, params)
    body = body_of(replay)
    assert (body["seed"], body["presence_penalty"], body["frequency_penalty"]) == (7, 0.4, -0.3)
    assert body["user"] == "u-81"


async def test_a_whole_answer_with_a_tool_call_and_reasoning_tokens() -> None:
    replay = Replay().json(200, "openai/chat_completion_reasoning_tools.json")
    events = await events_of(replay, ChatParams(model=MODEL, tools=[WEATHER]), stream=False)
    call = ToolCall(
        id="call_Zt5rN1xQ8wE3cV6bY0uJm2Ks",
        name="get_weather",
        arguments='{"city":"Oslo","unit":"celsius"}',
    )
    assert events[:-1] == [
        ToolCallPiece(index=0, id=call.id, name=call.name, arguments=call.arguments)
    ]
    done = events[-1]
    assert isinstance(done, ChatDone)
    assert (done.finish_reason, done.tool_calls) == ("tool_calls", [call])
    assert (done.usage.completion_tokens, done.usage.reasoning_tokens) == (281, 256)


async def test_a_server_that_repeats_the_id_on_every_piece_names_each_call_once() -> None:
    def chunk(piece: dict[str, Any]) -> str:
        delta = {"tool_calls": [piece]}
        return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta}]}) + "\n\n"

    repeated = {"index": 0, "id": "call_a", "type": "function"}
    stream = "".join(
        [
            chunk({**repeated, "function": {"name": "get_time", "arguments": ""}}),
            chunk({**repeated, "function": {"name": "get_time", "arguments": '{"tz":'}}),
            chunk({**repeated, "function": {"arguments": '"UTC"}'}}),
            'data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n',
            "data: [DONE]\n\n",
        ]
    )
    replay = Replay().raw(200, stream.encode(), content_type="text/event-stream")
    events = await events_of(replay, ChatParams(model=MODEL, tools=[TIME]))
    assert events[:-1] == [
        ToolCallPiece(index=0, id="call_a", name="get_time"),
        ToolCallPiece(index=0, arguments='{"tz":'),
        ToolCallPiece(index=0, arguments='"UTC"}'),
    ]
    done = events[-1]
    assert isinstance(done, ChatDone)
    assert done.tool_calls == [ToolCall(id="call_a", name="get_time", arguments='{"tz":"UTC"}')]


@pytest.mark.parametrize(
    "params",
    [
        ChatParams(model=MODEL, tools=[WEATHER]),
        ChatParams(model=MODEL, tools=[WEATHER], tool_choice="none"),
    ],
)
async def test_a_server_configured_without_tools_refuses_them_before_calling(
    params: ChatParams,
) -> None:
    replay = Replay().sse("openai/chat_stream.sse")
    with pytest.raises(ProviderError) as info:
        await events_of(replay, params, tools=False)
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert "does not support tools" in info.value.detail
    assert replay.requests == []


async def test_a_conversation_holding_tool_results_is_refused_without_tools() -> None:
    replay = Replay().sse("openai/chat_stream.sse")
    loop = [
        *ASK,
        ChatMessage(role="assistant", content="", tool_calls=PARALLEL_CALLS[:1]),
        ChatMessage(role="tool", content="3", tool_call_id=PARALLEL_CALLS[0].id),
    ]
    with pytest.raises(ProviderError) as info:
        await events_of(replay, ChatParams(model=MODEL), loop, tools=False)
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert replay.requests == []


async def test_an_option_the_server_is_configured_without_is_refused_by_name() -> None:
    replay = Replay().sse("openai/chat_stream.sse")
    params = ChatParams(model=MODEL, seed=1, user="u")
    with pytest.raises(ProviderError) as info:
        await events_of(replay, params, options=["user", "presence_penalty"])
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert not info.value.retryable
    assert "it does not support seed" in info.value.detail
    assert replay.requests == []
