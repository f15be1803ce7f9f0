"""The fallback chat provider: when it moves on, when it must not, what it reports."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from contracts.content import ImagePart, ImageUrl, TextPart
from contracts.errors import ConfigError, ErrorCode
from contracts.generate import ChatMessage, ToolSpec
from contracts.response_format import ResponseFormatJsonObject
from providers.chat import ChatProvider, chat_providers
from providers.chat.anthropic import AnthropicChat, AnthropicChatConfig
from providers.chat.base import ChatDone, ChatParams, TextPiece
from providers.chat.fallback import FallbackChat
from providers.chat.openai_compat import OpenAIChat, OpenAIChatConfig
from providers.errors import ProviderError
from providers.registry import parse_config
from tests.conformance.chat import MESSAGES, collect, collect_text
from tests.unit.providers import FakeClock, FakeSleep, Replay

MODEL = "llama-3.1-8b-instruct"
PARAMS = ChatParams(model=MODEL)
TEXT = "Hello! How can I help?"


def openai(name: str, replay: Replay, models: list[str] | None = None, **extra: Any) -> OpenAIChat:
    raw: dict[str, Any] = {
        "name": name,
        "models": models or [MODEL],
        "retry": {"max_attempts": 1},
        **extra,
    }
    config = parse_config(name, raw, OpenAIChatConfig)
    return OpenAIChat(config, transport=replay.transport(), sleep=FakeSleep(), clock=FakeClock())


async def close_all(*providers: ChatProvider) -> None:
    for provider in providers:
        await provider.aclose()


def text_of(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextPiece))


async def test_moves_on_after_a_retryable_failure() -> None:
    down = Replay().json(503, "openai/error_500.json")
    up = Replay().sse("openai/chat_stream.sse")
    chain = FallbackChat([openai("primary", down), openai("secondary", up)])
    try:
        events = await collect(chain, PARAMS)
    finally:
        await chain.aclose()
    assert text_of(events) == TEXT
    assert isinstance(events[-1], ChatDone)
    assert len(down.requests) == 1
    assert len(up.requests) == 1


async def test_a_final_error_is_not_hidden_by_the_next_provider() -> None:
    refused = Replay().json(401, "openai/error_401_invalid_api_key.json")
    spare = Replay().sse("openai/chat_stream.sse")
    chain = FallbackChat([openai("primary", refused), openai("secondary", spare)])
    try:
        with pytest.raises(ProviderError) as info:
            await collect(chain, PARAMS)
    finally:
        await chain.aclose()
    assert info.value.code is ErrorCode.AUTH
    assert spare.requests == []


async def test_an_open_circuit_is_skipped_without_calling_it() -> None:
    down = Replay().json(500, "openai/error_500.json")
    up = Replay().sse("openai/chat_stream.sse")
    primary = openai("primary", down, circuit={"failure_threshold": 1})
    chain = FallbackChat([primary, openai("secondary", up)])
    try:
        await collect(chain, PARAMS)  # opens primary's circuit
        events = await collect(chain, PARAMS)
    finally:
        await chain.aclose()
    assert text_of(events) == TEXT
    assert len(down.requests) == 1  # the second call never reached it
    assert len(up.requests) == 2


async def test_no_switch_once_text_was_yielded() -> None:
    cut = b'data: {"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}\n\n'
    broken = Replay().raw(200, cut, content_type="text/event-stream")
    spare = Replay().sse("openai/chat_stream.sse")
    chain = FallbackChat([openai("primary", broken), openai("secondary", spare)])
    seen: list[str] = []
    try:
        with pytest.raises(ProviderError) as info:
            await collect_text(chain, PARAMS, seen)
    finally:
        await chain.aclose()
    assert seen == ["Hel"]
    assert info.value.code is ErrorCode.PROVIDER_DOWN
    assert spare.requests == []


async def test_when_every_provider_fails_the_error_names_them_all() -> None:
    limited = Replay().json(429, "openai/error_429_rate_limit.json", {"retry-after": "20"})
    slow = Replay().timeout()
    chain = FallbackChat([openai("primary", limited), openai("secondary", slow)])
    try:
        with pytest.raises(ProviderError) as info:
            await collect(chain, PARAMS)
    finally:
        await chain.aclose()
    error = info.value
    assert error.op == "fallback.chat"
    assert error.code is ErrorCode.TIMEOUT  # the last failure's code
    assert error.retry_after_s == 20.0
    assert "primary.chat" in error.detail
    assert "secondary.chat" in error.detail


async def test_capabilities_are_the_union_and_routing_follows_models() -> None:
    a = Replay().sse("openai/chat_stream.sse")
    b = Replay().sse("openai/chat_stream.sse")
    chain = FallbackChat([openai("a", a, ["m1", "m2"]), openai("b", b, ["m2", "m3"])])
    try:
        assert chain.capabilities.models == ("m1", "m2", "m3")
        await collect(chain, ChatParams(model="m3"))
        assert a.requests == []
        assert len(b.requests) == 1
        with pytest.raises(ProviderError) as info:
            await collect(chain, ChatParams(model="m9"))
        assert info.value.code is ErrorCode.NOT_FOUND
    finally:
        await chain.aclose()


async def test_a_substitute_model_stands_in_on_a_provider_that_lacks_the_requested_one() -> None:
    down = Replay().json(500, "openai/error_500.json")
    local = Replay().sse("openai/chat_stream.sse")
    chain = FallbackChat(
        [openai("hosted", down, ["gpt-4o-mini"]), openai("local", local, ["smollm2"])],
        substitutes=[None, "smollm2"],
    )
    try:
        events = await collect(chain, ChatParams(model="gpt-4o-mini"))
    finally:
        await chain.aclose()
    assert text_of(events) == TEXT
    assert json.loads(local.requests[0].content)["model"] == "smollm2"


async def test_closing_early_closes_the_inner_stream() -> None:
    up = Replay().sse("openai/chat_stream.sse")
    chain = FallbackChat([openai("only", up)])
    try:
        stream = chain.stream_chat(MESSAGES, PARAMS)
        assert isinstance(stream, AsyncGenerator)
        assert isinstance(await anext(stream), TextPiece)
        await stream.aclose()
        assert up.opened == up.closed == 1
    finally:
        await chain.aclose()


async def test_created_from_config_through_the_registry() -> None:
    chain = chat_providers.create(
        "fallback",
        {
            "providers": [
                {"name": "openai", "config": {"api_key": "sk-a", "models": ["gpt-4o-mini"]}},
                {"name": "anthropic", "config": {"models": ["claude-haiku-4-5"]}},
            ]
        },
    )
    try:
        assert isinstance(chain, FallbackChat)
        assert isinstance(chain, ChatProvider)
        assert [type(p) for p in chain.providers] == [OpenAIChat, AnthropicChat]
        assert chain.capabilities.models == ("gpt-4o-mini", "claude-haiku-4-5")
    finally:
        await chain.aclose()
    with pytest.raises(ConfigError, match="providers"):
        chat_providers.create("fallback", {"providers": []})
    with pytest.raises(ConfigError, match="unknown chat provider 'nope'"):
        chat_providers.create("fallback", {"providers": [{"name": "nope"}]})


async def test_providers_without_tools_are_passed_over_for_a_request_with_tools() -> None:
    plain = Replay().sse("openai/chat_stream.sse")
    tooled = Replay().sse("openai/chat_stream_tools.sse")
    chain = FallbackChat([openai("plain", plain, tools=False), openai("tooled", tooled)])
    params = ChatParams(model=MODEL, tools=[ToolSpec(name="get_weather")])
    try:
        assert chain.capabilities.tools
        events = await collect(chain, params)
        done = events[-1]
        assert isinstance(done, ChatDone)
        assert done.finish_reason == "tool_calls"
        assert plain.requests == []
        # Without tools the first provider answers as before.
        assert text_of(await collect(chain, PARAMS)) == TEXT
        assert len(plain.requests) == 1
    finally:
        await chain.aclose()


async def test_a_request_no_provider_can_honour_is_refused_naming_what_each_lacks() -> None:
    plain = Replay().sse("openai/chat_stream.sse")
    no_seed = Replay().sse("openai/chat_stream.sse")
    chain = FallbackChat(
        [openai("plain", plain, tools=False), openai("no-seed", no_seed, options=["user"])]
    )
    params = ChatParams(model=MODEL, tools=[ToolSpec(name="get_weather")], seed=3)
    try:
        # The chain offers what any of its providers offers ("plain" has every option).
        assert chain.capabilities.options == {"seed", "presence_penalty", "frequency_penalty",
                                              "user"}  # fmt: skip
        with pytest.raises(ProviderError) as info:
            await collect(chain, params)
    finally:
        await chain.aclose()
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert "plain: it does not support tools" in info.value.detail
    assert "no-seed: it does not support seed" in info.value.detail
    assert plain.requests == no_seed.requests == []


async def test_images_and_json_pass_over_providers_without_vision_or_json_schema() -> None:
    blind = Replay().sse("openai/chat_stream.sse")
    sighted = Replay().sse("openai/chat_stream_json_schema.sse")
    chain = FallbackChat(
        [openai("blind", blind, vision=False, json_schema=False), openai("sighted", sighted)]
    )
    look = [
        ChatMessage(
            role="user",
            content=[
                TextPart(text="Who is this?"),
                ImagePart(image_url=ImageUrl(url="https://example.com/ada.jpg")),
            ],
        )
    ]
    params = ChatParams(model=MODEL, response_format=ResponseFormatJsonObject())
    try:
        assert chain.capabilities.vision
        assert chain.capabilities.json_schema
        events = [event async for event in chain.stream_chat(look, params)]
        assert text_of(events) == '{"name":"Ada Lovelace","age":36}'
        assert blind.requests == []
        assert len(sighted.requests) == 1
    finally:
        await chain.aclose()


async def test_named_speakers_pass_over_a_provider_that_cannot_carry_names() -> None:
    unnamed = Replay().sse("anthropic/messages_stream.sse")
    named = Replay().sse("openai/chat_stream.sse")
    config = parse_config("anthropic", {"models": [MODEL]}, AnthropicChatConfig)
    anthropic = AnthropicChat(config, transport=unnamed.transport())
    chain = FallbackChat([anthropic, openai("named", named)])
    speakers = [
        ChatMessage(role="user", content="Hello from Ada", name="ada"),
        ChatMessage(role="user", content="And from Grace", name="grace"),
    ]
    try:
        assert chain.capabilities.names
        events = [event async for event in chain.stream_chat(speakers, PARAMS)]
        assert text_of(events) == TEXT
        assert unnamed.requests == []
        body = json.loads(named.requests[0].content)
        assert [m["name"] for m in body["messages"]] == ["ada", "grace"]
        # Alone, the provider that cannot carry them refuses them before any call.
        with pytest.raises(ProviderError) as info:
            async for _ in FallbackChat([anthropic]).stream_chat(speakers, PARAMS):
                pass
    finally:
        await chain.aclose()
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert "anthropic: it cannot carry speaker names" in info.value.detail
    assert unnamed.requests == []
