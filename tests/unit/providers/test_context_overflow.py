"""A prompt too long for the model's context: refused before the call when the window is
known, and recognised in what each server answers when it is not (an HTTP error, or an
error inside a stream that already began); never retried, never a mark on the circuit."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.errors import ErrorCode
from contracts.generate import ChatMessage
from providers.chat.anthropic import AnthropicChat, AnthropicChatConfig
from providers.chat.base import ChatDone, ChatParams
from providers.chat.openai_compat import OpenAIChat, OpenAIChatConfig
from providers.circuit import CircuitState
from providers.errors import ProviderError
from providers.registry import parse_config
from tests.conformance.chat import collect
from tests.unit.providers import API_KEY, FakeClock, FakeSleep, Replay

MODEL = "qwen2.5-0.5b-instruct"
LONG = [ChatMessage(role="user", content="word " * 4000)]  # about 5,000 tokens estimated


def openai(replay: Replay, **overrides: Any) -> OpenAIChat:
    raw: dict[str, Any] = {"api_key": API_KEY, "models": [MODEL], **overrides}
    return OpenAIChat(
        parse_config("openai", raw, OpenAIChatConfig),
        transport=replay.transport(),
        sleep=FakeSleep(),
        clock=FakeClock(),
    )


async def refusal(provider: OpenAIChat | AnthropicChat, params: ChatParams) -> ProviderError:
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider, params)
    finally:
        await provider.aclose()
    return info.value


@pytest.mark.parametrize(
    "stream",
    [
        "llamacpp/chat_stream_context_exceeded_handwritten.sse",
        "llamacpp/chat_stream_context_exceeded_error_line_handwritten.sse",
    ],
)
async def test_an_overflow_reported_inside_a_started_stream_is_final(stream: str) -> None:
    # llama.cpp server answers 200, starts the stream, then says the prompt does not fit:
    # once, not 9 times through retries, and the circuit stays closed for the next caller.
    replay = Replay().sse(stream)
    provider = openai(replay, circuit={"failure_threshold": 1})
    try:
        for _ in range(3):
            with pytest.raises(ProviderError) as info:
                await collect(provider, ChatParams(model=MODEL))
            assert info.value.code is ErrorCode.CONTEXT_LENGTH_EXCEEDED
            assert not info.value.retryable
            assert "exceeds the available context size" in info.value.detail
        assert provider.breaker.state is CircuitState.CLOSED
        assert len(replay.requests) == 3
        replay.steps = []
        replay.sse("openai/chat_stream.sse")
        events = await collect(provider, ChatParams(model=MODEL))
        assert isinstance(events[-1], ChatDone)
    finally:
        await provider.aclose()


async def test_openai_400_context_length_exceeded_is_not_retried() -> None:
    replay = Replay().json(400, "openai/error_400_context_length.json")
    error = await refusal(openai(replay), ChatParams(model=MODEL))
    assert error.code is ErrorCode.CONTEXT_LENGTH_EXCEEDED
    assert "maximum context length is 128000 tokens" in error.detail
    assert len(replay.requests) == 1


async def test_anthropic_prompt_is_too_long_is_not_retried() -> None:
    replay = Replay().json(400, "anthropic/error_400_prompt_too_long_handwritten.json")
    config = parse_config(
        "anthropic", {"api_key": API_KEY, "models": ["claude-sonnet-4-5"]}, AnthropicChatConfig
    )
    provider = AnthropicChat(
        config, transport=replay.transport(), sleep=FakeSleep(), clock=FakeClock()
    )
    error = await refusal(provider, ChatParams(model="claude-sonnet-4-5"))
    assert error.code is ErrorCode.CONTEXT_LENGTH_EXCEEDED
    assert "prompt is too long" in error.detail
    assert len(replay.requests) == 1
    assert provider.breaker.state is CircuitState.CLOSED


async def test_a_known_window_holds_the_prompt_and_max_tokens_before_any_call() -> None:
    replay = Replay().sse("openai/chat_stream.sse")
    provider = openai(replay, max_context_tokens=4096)
    try:
        fits = await collect(provider, ChatParams(model=MODEL, max_tokens=4000))
        assert isinstance(fits[-1], ChatDone)  # MESSAGES are a few dozen tokens
        with pytest.raises(ProviderError) as info:
            await collect(provider, ChatParams(model=MODEL, max_tokens=4090))
        assert info.value.code is ErrorCode.CONTEXT_LENGTH_EXCEEDED
        assert "max_tokens 4090" in info.value.detail
        assert "(estimated)" in info.value.detail
        with pytest.raises(ProviderError) as long:
            async for _ in provider.stream_chat(LONG, ChatParams(model=MODEL)):
                pass
        assert long.value.code is ErrorCode.CONTEXT_LENGTH_EXCEEDED
        assert "room for an answer" in long.value.detail
    finally:
        await provider.aclose()
    assert len(replay.requests) == 1  # only the call that fitted went out
