"""The Anthropic Messages provider against recorded streams and error bodies."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from contracts.errors import ErrorCode
from contracts.generate import ChatMessage, ToolCall, ToolSpec
from providers.chat import ChatProvider, chat_providers
from providers.chat.anthropic import AnthropicChat, AnthropicChatConfig
from providers.chat.base import ChatDone, ChatParams, TextPiece
from providers.errors import ProviderError
from providers.registry import parse_config
from tests.conformance.chat import (
    MESSAGES,
    ChatProviderConformance,
    Counter,
    collect,
    collect_text,
)
from tests.unit.providers import API_KEY, FakeClock, FakeSleep, Replay

MODEL = "claude-sonnet-4-5"
PARAMS = ChatParams(model=MODEL)


def make(replay: Replay, *, sleep: FakeSleep | None = None, **overrides: Any) -> AnthropicChat:
    raw: dict[str, Any] = {"api_key": API_KEY, "models": [MODEL], **overrides}
    config = parse_config("anthropic", raw, AnthropicChatConfig)
    return AnthropicChat(
        config, transport=replay.transport(), sleep=sleep or FakeSleep(), clock=FakeClock()
    )


def body_of(replay: Replay, n: int = 0) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(replay.requests[n].content)
    return parsed


class TestConformance(ChatProviderConformance):
    model = MODEL
    registry_name = "anthropic"

    @pytest.fixture
    def replay(self) -> Replay:
        return Replay().sse("anthropic/messages_stream.sse")

    @pytest.fixture
    async def provider(self, replay: Replay) -> AsyncIterator[ChatProvider]:
        provider = make(replay)
        yield provider
        await provider.aclose()

    @pytest.fixture
    def calls_made(self, replay: Replay) -> Counter:
        return lambda: len(replay.requests)

    @pytest.fixture
    def open_calls(self, replay: Replay) -> Counter:
        return replay.open_responses

    @pytest.fixture
    async def tool_call_provider(self) -> AsyncIterator[ChatProvider]:
        provider = make(Replay().sse("anthropic/messages_stream_tools.sse"))
        yield provider
        await provider.aclose()

    @pytest.fixture
    async def failing_provider(self) -> AsyncIterator[ChatProvider]:
        provider = make(Replay().json(401, "anthropic/error_401.json"))
        yield provider
        await provider.aclose()


async def test_streams_text_and_sends_a_messages_request() -> None:
    replay = Replay().sse("anthropic/messages_stream.sse", chunk_size=7)
    provider = make(replay, default_max_tokens=256)
    try:
        params = ChatParams(model=MODEL, temperature=0.7, top_p=0.9, stop=["END"])
        events = [e async for e in provider.stream_chat(MESSAGES, params)]
    finally:
        await provider.aclose()
    assert [e.text for e in events if isinstance(e, TextPiece)] == [
        "Hello",
        "! How can I",
        " help you today?",
    ]
    done = events[-1]
    assert isinstance(done, ChatDone)
    assert done.finish_reason == "stop"  # end_turn, in the fleet's words
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (25, 12)

    request = replay.requests[0]
    assert str(request.url) == "https://api.anthropic.com/v1/messages"
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    body = body_of(replay)
    assert body["system"] == "You are terse."
    assert body["messages"] == [{"role": "user", "content": "Hello"}]
    assert body["max_tokens"] == 256
    assert body["stream"] is True
    assert body["temperature"] == 0.7
    assert body["top_p"] == 0.9
    assert body["stop_sequences"] == ["END"]


async def test_a_temperature_beyond_anthropics_range_is_refused_not_capped() -> None:
    replay = Replay().sse("anthropic/messages_stream.sse")
    provider = make(replay)
    try:
        with pytest.raises(ProviderError) as info:
            _ = [
                e
                async for e in provider.stream_chat(
                    MESSAGES, ChatParams(model=MODEL, temperature=1.5)
                )
            ]
    finally:
        await provider.aclose()
    assert info.value.code == ErrorCode.INVALID_INPUT
    assert "outside Anthropic's range 0..1" in str(info.value)
    assert replay.requests == []  # refused before any call


async def test_tool_use_is_assembled_from_input_json_deltas() -> None:
    replay = Replay().sse("anthropic/messages_stream_tools.sse")
    provider = make(replay)
    tool = ToolSpec(name="get_weather", parameters={"type": "object", "properties": {}})
    history = [
        ChatMessage(role="user", content="Weather in Oslo?"),
        ChatMessage(
            role="assistant",
            content="Checking.",
            tool_calls=[
                ToolCall(id="toolu_0", name="get_weather", arguments='{"location":"Oslo"}')
            ],
        ),
        ChatMessage(role="tool", content="3 degrees", tool_call_id="toolu_0"),
        ChatMessage(role="user", content="And Paris?"),
    ]
    try:
        events = [
            e async for e in provider.stream_chat(history, ChatParams(model=MODEL, tools=[tool]))
        ]
    finally:
        await provider.aclose()
    text = "".join(e.text for e in events if isinstance(e, TextPiece))
    assert text == "Okay, let's check the weather for Paris:"
    done = events[-1]
    assert isinstance(done, ChatDone)
    assert done.finish_reason == "tool_calls"
    assert done.tool_calls == [
        ToolCall(
            id="toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            name="get_weather",
            arguments='{"location": "Paris"}',
        )
    ]
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (472, 89)

    body = body_of(replay)
    assert body["tools"] == [
        {"name": "get_weather", "description": "", "input_schema": tool.parameters}
    ]
    assert "system" not in body
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking."},
            {
                "type": "tool_use",
                "id": "toolu_0",
                "name": "get_weather",
                "input": {"location": "Oslo"},
            },
        ],
    }
    assert body["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_0", "content": "3 degrees"}],
    }


async def test_overloaded_event_before_any_text_is_retried() -> None:
    replay = Replay().sse("anthropic/stream_overloaded.sse").sse("anthropic/messages_stream.sse")
    sleep = FakeSleep()
    provider = make(replay, sleep=sleep)
    try:
        events = await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert isinstance(events[-1], ChatDone)
    assert len(replay.requests) == 2
    assert len(sleep.delays) == 1


async def test_overloaded_event_after_text_is_provider_down_and_not_retried() -> None:
    replay = Replay().sse("anthropic/stream_text_then_overloaded.sse")
    provider = make(replay)
    seen: list[str] = []
    try:
        with pytest.raises(ProviderError) as info:
            await collect_text(provider, PARAMS, seen)
    finally:
        await provider.aclose()
    assert seen == ["Once upon"]
    assert info.value.code is ErrorCode.PROVIDER_DOWN
    assert "overloaded_error" in info.value.detail
    assert len(replay.requests) == 1


async def test_401_is_auth_and_not_retried() -> None:
    replay = Replay().json(401, "anthropic/error_401.json")
    sleep = FakeSleep()
    provider = make(replay, sleep=sleep)
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert info.value.code is ErrorCode.AUTH
    assert "authentication_error" in info.value.detail
    assert len(replay.requests) == 1
    assert sleep.delays == []


async def test_429_waits_for_retry_after() -> None:
    replay = (
        Replay()
        .json(429, "anthropic/error_429.json", {"retry-after": "12"})
        .sse("anthropic/messages_stream.sse")
    )
    sleep = FakeSleep()
    provider = make(replay, sleep=sleep)
    try:
        events = await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert isinstance(events[-1], ChatDone)
    assert sleep.delays == [12.0]


async def test_retry_after_beyond_the_policy_limit_goes_up_to_the_worker() -> None:
    replay = Replay().json(429, "anthropic/error_429.json", {"retry-after": "600"})
    sleep = FakeSleep()
    provider = make(replay, sleep=sleep, retry={"max_retry_after_s": 60})
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert info.value.code is ErrorCode.RATE_LIMIT
    assert info.value.retry_after_s == 600.0
    assert sleep.delays == []


@pytest.mark.parametrize(
    ("status", "name", "code"),
    [
        (429, "anthropic/error_429_spend_limit.json", ErrorCode.BUDGET_EXHAUSTED),
        (402, "anthropic/error_402_billing.json", ErrorCode.BUDGET_EXHAUSTED),
        (529, "anthropic/error_529.json", ErrorCode.PROVIDER_DOWN),
        (500, "anthropic/error_500.json", ErrorCode.PROVIDER_DOWN),
    ],
)
async def test_error_statuses(status: int, name: str, code: ErrorCode) -> None:
    replay = Replay().json(status, name)
    provider = make(replay, retry={"max_attempts": 2})
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert info.value.code is code
    assert len(replay.requests) == (2 if code.retryable else 1)


async def test_read_timeout_is_timeout() -> None:
    replay = Replay().timeout()
    provider = make(replay, retry={"max_attempts": 1})
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert info.value.code is ErrorCode.TIMEOUT


async def test_malformed_event_is_a_typed_unexpected_response() -> None:
    data = b'event: message_start\ndata: {"type": "message_start", "message": \n\n'
    replay = Replay().raw(200, data, content_type="text/event-stream")
    provider = make(replay, retry={"max_attempts": 1})
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert info.value.code is ErrorCode.UNEXPECTED_RESPONSE
    assert "malformed stream event" in info.value.detail


async def test_stream_without_message_stop_is_an_error() -> None:
    data = (
        b"event: message_start\n"
        b'data: {"type":"message_start","message":{"usage":{"input_tokens":3}}}\n\n'
    )
    replay = Replay().raw(200, data, content_type="text/event-stream")
    provider = make(replay, retry={"max_attempts": 1})
    try:
        with pytest.raises(ProviderError, match="message_stop") as info:
            await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert info.value.code is ErrorCode.PROVIDER_DOWN


async def test_api_key_never_leaks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    replay = Replay().json(529, "anthropic/error_529.json").json(401, "anthropic/error_401.json")
    config = parse_config("anthropic", {"api_key": API_KEY, "models": [MODEL]}, AnthropicChatConfig)
    provider = AnthropicChat(config, transport=replay.transport(), sleep=FakeSleep())
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert info.value.code is ErrorCode.AUTH
    assert "retry" in caplog.text
    for text in (repr(provider), repr(config), str(info.value), caplog.text):
        assert API_KEY not in text


async def test_registered_as_anthropic() -> None:
    provider = chat_providers.create("anthropic", {"models": [MODEL]})
    try:
        assert isinstance(provider, AnthropicChat)
        assert isinstance(provider, ChatProvider)
    finally:
        await provider.aclose()
