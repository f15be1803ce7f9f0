"""The OpenAI-compatible chat provider against recorded Chat Completions responses."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from contracts.errors import ConfigError, ErrorCode
from contracts.generate import ChatMessage, ToolCall, ToolSpec
from providers.chat import ChatProvider, chat_providers
from providers.chat.base import ChatDone, ChatParams, TextPiece, ToolCallPiece
from providers.chat.openai_compat import OpenAIChat, OpenAIChatConfig
from providers.circuit import CircuitOpenError, CircuitState
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

MODEL = "gpt-4o-mini"
PARAMS = ChatParams(model=MODEL)


def make(
    replay: Replay,
    *,
    sleep: FakeSleep | None = None,
    clock: FakeClock | None = None,
    **overrides: Any,
) -> OpenAIChat:
    raw: dict[str, Any] = {"api_key": API_KEY, "models": [MODEL], **overrides}
    config = parse_config("openai", raw, OpenAIChatConfig)
    return OpenAIChat(
        config,
        transport=replay.transport(),
        sleep=sleep or FakeSleep(),
        clock=clock or FakeClock(),
    )


def state(provider: OpenAIChat) -> CircuitState:
    return provider.breaker.state


def body_of(replay: Replay, n: int = 0) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(replay.requests[n].content)
    return parsed


class TestConformance(ChatProviderConformance):
    model = MODEL
    registry_name = "openai"

    @pytest.fixture
    def replay(self) -> Replay:
        return Replay().sse("openai/chat_stream.sse")

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
        provider = make(Replay().sse("openai/chat_stream_tools.sse"))
        yield provider
        await provider.aclose()

    @pytest.fixture
    async def failing_provider(self) -> AsyncIterator[ChatProvider]:
        provider = make(Replay().json(401, "openai/error_401_invalid_api_key.json"))
        yield provider
        await provider.aclose()


async def test_streams_the_recorded_answer_and_reads_the_usage_chunk() -> None:
    replay = Replay().sse("openai/chat_stream.sse", chunk_size=11)
    provider = make(replay)
    try:
        params = ChatParams(model=MODEL, max_tokens=50, temperature=0.2, stop=["\n\n"])
        events = [e async for e in provider.stream_chat(MESSAGES, params)]
    finally:
        await provider.aclose()
    text = "".join(e.text for e in events if isinstance(e, TextPiece))
    assert text == "Hello! How can I help?"
    done = events[-1]
    assert isinstance(done, ChatDone)
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (19, 9)
    assert done.tool_calls is None

    request = replay.requests[0]
    assert request.method == "POST"
    assert str(request.url) == "https://api.openai.com/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    body = body_of(replay)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["model"] == MODEL
    assert body["max_tokens"] == 50
    assert body["temperature"] == 0.2
    assert body["stop"] == ["\n\n"]
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hello"},
    ]


async def test_tool_calls_streamed_in_pieces_are_assembled() -> None:
    replay = Replay().sse("openai/chat_stream_tools.sse")
    provider = make(replay, base_url="http://vllm.internal:8000/v1/")
    weather = ToolSpec(
        name="get_weather",
        description="Current weather",
        parameters={"type": "object", "properties": {"location": {"type": "string"}}},
    )
    history = [
        ChatMessage(role="user", content="Weather in Paris?"),
        ChatMessage(
            role="assistant",
            content="",
            tool_calls=[ToolCall(id="call_0", name="get_weather", arguments='{"location":"Oslo"}')],
        ),
        ChatMessage(role="tool", content='{"temp": 3}', tool_call_id="call_0"),
    ]
    try:
        events = [
            e async for e in provider.stream_chat(history, ChatParams(model=MODEL, tools=[weather]))
        ]
    finally:
        await provider.aclose()
    assert all(isinstance(e, ToolCallPiece) for e in events[:-1])  # no text
    done = events[-1]
    assert isinstance(done, ChatDone)
    assert done.finish_reason == "tool_calls"
    assert done.tool_calls == [
        ToolCall(
            id="call_DdmO9pD3xa9XTPNJ32zg2hcA", name="get_weather", arguments='{"location":"Paris"}'
        ),
        ToolCall(
            id="call_q8BXcDS3bT9eLaBE3m9yJvZx", name="get_time", arguments='{"tz": "Europe/Paris"}'
        ),
    ]
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (81, 45)

    assert str(replay.requests[0].url) == "http://vllm.internal:8000/v1/chat/completions"
    body = body_of(replay)
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather",
                "parameters": weather.parameters,
            },
        }
    ]
    assert body["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location":"Oslo"}'},
            }
        ],
    }
    assert body["messages"][2] == {
        "role": "tool",
        "content": '{"temp": 3}',
        "tool_call_id": "call_0",
    }


async def test_401_is_auth_and_not_retried() -> None:
    replay = Replay().json(401, "openai/error_401_invalid_api_key.json")
    sleep = FakeSleep()
    provider = make(replay, sleep=sleep)
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert info.value.code is ErrorCode.AUTH
    assert "invalid_request_error" in info.value.detail
    assert len(replay.requests) == 1
    assert sleep.delays == []


@pytest.mark.parametrize(
    ("headers", "expected_wait"),
    [({"retry-after": "7"}, 7.0), ({"retry-after-ms": "1500", "retry-after": "2"}, 1.5)],
)
async def test_429_waits_as_long_as_the_server_asks(
    headers: dict[str, str], expected_wait: float
) -> None:
    replay = (
        Replay()
        .json(429, "openai/error_429_rate_limit.json", headers)
        .sse("openai/chat_stream.sse")
    )
    sleep = FakeSleep()
    # base_delay 0.1: jitter alone would never wait this long, so the wait proves the header.
    provider = make(replay, sleep=sleep, retry={"base_delay_s": 0.1, "max_attempts": 3})
    try:
        events = await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert isinstance(events[-1], ChatDone)
    assert sleep.delays == [expected_wait]
    assert len(replay.requests) == 2


async def test_429_insufficient_quota_is_budget_exhausted_and_final() -> None:
    replay = Replay().json(429, "openai/error_429_insufficient_quota.json")
    sleep = FakeSleep()
    provider = make(replay, sleep=sleep)
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert info.value.code is ErrorCode.BUDGET_EXHAUSTED
    assert len(replay.requests) == 1
    assert sleep.delays == []


async def test_500_is_retried_with_backoff_then_reported_as_provider_down() -> None:
    replay = Replay().json(500, "openai/error_500.json")
    sleep = FakeSleep()
    provider = make(replay, sleep=sleep, retry={"max_attempts": 3, "base_delay_s": 0.5})
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert info.value.code is ErrorCode.PROVIDER_DOWN
    assert len(replay.requests) == 3
    assert len(sleep.delays) == 2
    assert 0 <= sleep.delays[0] <= 0.5
    assert 0 <= sleep.delays[1] <= 1.0


async def test_500_then_success_recovers() -> None:
    replay = Replay().json(500, "openai/error_500.json").sse("openai/chat_stream.sse")
    provider = make(replay)
    try:
        events = await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert "".join(e.text for e in events if isinstance(e, TextPiece)) == "Hello! How can I help?"


async def test_read_timeout_is_timeout() -> None:
    replay = Replay().timeout()
    provider = make(replay, retry={"max_attempts": 2})
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert info.value.code is ErrorCode.TIMEOUT
    assert "ReadTimeout" in info.value.detail
    assert len(replay.requests) == 2


async def test_connection_refused_is_provider_down() -> None:
    provider = make(Replay().connect_error(), retry={"max_attempts": 1})
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert info.value.code is ErrorCode.PROVIDER_DOWN


async def test_malformed_chunk_is_a_typed_unexpected_response_with_a_clear_message() -> None:
    replay = Replay().raw(
        200, b'data: {"choices": [{"delta": {"content": "Hi"\n\n', content_type="text/event-stream"
    )
    provider = make(replay, retry={"max_attempts": 1})
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert info.value.code is ErrorCode.UNEXPECTED_RESPONSE
    assert "malformed stream chunk" in info.value.detail


async def test_html_error_page_from_a_proxy_maps_by_status() -> None:
    replay = Replay().raw(
        502, b"<html><body>502 Bad Gateway</body></html>", content_type="text/html"
    )
    provider = make(replay, retry={"max_attempts": 1})
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert info.value.code is ErrorCode.PROVIDER_DOWN
    assert "non-JSON body" in info.value.detail


async def test_stream_cut_after_text_fails_without_retrying() -> None:
    cut = b'data: {"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}\n\n'
    replay = Replay().raw(200, cut, content_type="text/event-stream")
    provider = make(replay)
    seen: list[str] = []
    try:
        with pytest.raises(ProviderError) as info:
            await collect_text(provider, PARAMS, seen)
    finally:
        await provider.aclose()
    assert seen == ["Hel"]
    assert info.value.code is ErrorCode.PROVIDER_DOWN
    assert len(replay.requests) == 1  # text was out: a retry would repeat it


async def test_error_object_inside_the_stream_is_mapped() -> None:
    data = (
        b'data: {"error": {"message": "The server is overloaded", '
        b'"type": "server_error", "code": null}}\n\n'
    )
    replay = Replay().raw(200, data, content_type="text/event-stream")
    provider = make(replay, retry={"max_attempts": 1})
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert info.value.code is ErrorCode.PROVIDER_DOWN
    assert "overloaded" in info.value.detail


async def test_circuit_opens_then_half_opens_after_the_reset_timeout() -> None:
    clock = FakeClock()
    replay = Replay().json(500, "openai/error_500.json")
    provider = make(
        replay,
        clock=clock,
        retry={"max_attempts": 1},
        circuit={"failure_threshold": 2, "reset_timeout_s": 30},
    )
    try:
        for _ in range(2):
            with pytest.raises(ProviderError):
                await collect(provider, PARAMS)
        assert state(provider) is CircuitState.OPEN
        with pytest.raises(CircuitOpenError) as info:
            await collect(provider, PARAMS)
        assert info.value.code is ErrorCode.PROVIDER_DOWN
        assert "'openai'" in str(info.value)
        assert len(replay.requests) == 2  # the open circuit never called out
        assert not await provider.health()

        clock.advance(30)
        replay.steps = []
        replay.sse("openai/chat_stream.sse")
        events = await collect(provider, PARAMS)
        assert isinstance(events[-1], ChatDone)
        assert state(provider) is CircuitState.CLOSED
    finally:
        await provider.aclose()


async def test_api_key_never_leaks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # A 500 first, so the retry path logs; then the 401 body that echoes the key back.
    replay = (
        Replay()
        .json(500, "openai/error_500.json")
        .json(401, "openai/error_401_invalid_api_key.json")
    )
    config = parse_config("openai", {"api_key": API_KEY, "models": [MODEL]}, OpenAIChatConfig)
    provider = OpenAIChat(config, transport=replay.transport(), sleep=FakeSleep())
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert info.value.code is ErrorCode.AUTH
    assert replay.requests[-1].headers["authorization"] == f"Bearer {API_KEY}"  # it was sent
    assert "retry" in caplog.text  # the failing call was logged...
    for text in (repr(provider), repr(config), str(info.value), repr(info.value), caplog.text):
        assert API_KEY not in text  # ...and nothing shows the key
    assert "[redacted]" in str(info.value)


async def test_health_asks_the_models_endpoint() -> None:
    ok = make(Replay().raw(200, b'{"object": "list", "data": []}'))
    refused = make(Replay().json(401, "openai/error_401_invalid_api_key.json"))
    try:
        assert await ok.health()
        assert not await refused.health()
    finally:
        await ok.aclose()
        await refused.aclose()


async def test_registry_creates_it_and_validates_the_config() -> None:
    provider = chat_providers.create("openai", {"api_key": "sk-x", "models": [MODEL]})
    try:
        assert isinstance(provider, OpenAIChat)
        assert isinstance(provider, ChatProvider)
        assert provider.capabilities.models == (MODEL,)
    finally:
        await provider.aclose()
    with pytest.raises(ConfigError, match="models"):
        chat_providers.create("openai", {"api_key": "sk-x"})
    with pytest.raises(ConfigError, match="temprature"):
        chat_providers.create("openai", {"models": [MODEL], "temprature": 1})
    with pytest.raises(ConfigError, match="max_attempts"):
        chat_providers.create("openai", {"models": [MODEL], "retry": {"max_attempts": 0}})


async def test_a_streamed_call_answered_with_one_json_body_is_the_answer() -> None:
    # Some servers (cyllama's among them) answer "stream": true with a whole completion.
    replay = Replay().json(200, "openai/chat_completion.json")
    provider = make(replay)
    try:
        events = await collect(provider, PARAMS)
    finally:
        await provider.aclose()
    assert events[0] == TextPiece("Kafka is a distributed event log.")
    done = events[-1]
    assert isinstance(done, ChatDone)
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (19, 8)
    assert done.finish_reason == "stop"
    assert len(replay.requests) == 1
    assert state(provider) is CircuitState.CLOSED


async def test_stream_false_asks_for_the_whole_answer() -> None:
    replay = Replay().json(200, "openai/chat_completion.json")
    provider = make(replay, stream=False)
    try:
        text: list[str] = []
        await collect_text(provider, PARAMS, text)
    finally:
        await provider.aclose()
    body = body_of(replay)
    assert body["stream"] is False
    assert "stream_options" not in body
    assert text == ["Kafka is a distributed event log."]


async def test_answers_of_the_wrong_shape_are_not_retried_and_never_open_the_circuit() -> None:
    replay = Replay().raw(200, b'{"choices": "not a list"}')
    provider = make(replay, circuit={"failure_threshold": 2})
    try:
        for _ in range(5):
            with pytest.raises(ProviderError) as info:
                await collect(provider, PARAMS)
            assert info.value.code is ErrorCode.UNEXPECTED_RESPONSE
            assert not info.value.retryable
            assert "malformed response body" in info.value.detail
    finally:
        await provider.aclose()
    assert len(replay.requests) == 5  # one request per call: nothing retried
    assert state(provider) is CircuitState.CLOSED
