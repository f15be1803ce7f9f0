"""The fallback chain and context windows: a prompt too long for one link goes to a link
with a larger window (known from its config or the model catalogue, or learnt from the
server's refusal), and the chain's answer names the link that gave it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts.errors import ErrorCode
from contracts.generate import ChatMessage
from providers.catalogue import ModelCatalogue, ModelEntry
from providers.chat import chat_providers
from providers.chat.base import ChatDone, ChatParams
from providers.chat.catalogued import CataloguedChat
from providers.chat.fallback import FallbackChat
from providers.chat.openai_compat import OpenAIChat, OpenAIChatConfig
from providers.errors import ProviderError
from providers.registry import parse_config
from providers.shared import Shared
from tests.unit.providers import FakeClock, FakeSleep, Replay

SMALL, LARGE = "qwen2.5-0.5b-instruct", "llama-3.1-8b-128k"
# About 2,500 tokens estimated: more than a 2,048-token window, far less than 131,072.
LONG = [ChatMessage(role="user", content="Summarise this log. " + "GET /index.html 200 " * 480)]


def openai(name: str, replay: Replay, model: str, **extra: Any) -> OpenAIChat:
    raw: dict[str, Any] = {"name": name, "models": [model], "retry": {"max_attempts": 1}, **extra}
    config = parse_config(name, raw, OpenAIChatConfig)
    return OpenAIChat(config, transport=replay.transport(), sleep=FakeSleep(), clock=FakeClock())


async def answer(chain: FallbackChat, params: ChatParams) -> ChatDone:
    try:
        events = [event async for event in chain.stream_chat(LONG, params)]
    finally:
        await chain.aclose()
    done = events[-1]
    assert isinstance(done, ChatDone)
    return done


async def test_a_too_long_prompt_falls_back_to_a_larger_context_provider() -> None:
    small = Replay().sse("openai/chat_stream.sse")
    large = Replay().sse("openai/chat_stream.sse")
    chain = FallbackChat(
        [
            openai("edge", small, SMALL, max_context_tokens=2048),
            openai("big", large, LARGE, max_context_tokens=131_072),
        ],
        substitutes=[None, LARGE],
    )
    assert chain.capabilities.max_context_tokens == 131_072  # the largest link's
    done = await answer(chain, ChatParams(model=SMALL, max_tokens=256))
    assert small.requests == []  # refused before the call: it could not fit
    assert json.loads(large.requests[0].content)["model"] == LARGE
    assert (done.provider, done.model) == ("big", LARGE)


async def test_a_server_that_reports_the_overflow_is_left_for_the_next_link() -> None:
    # The window of the llama.cpp server is not configured: it starts the stream and then
    # says the prompt does not fit; the chain moves on instead of failing the job.
    server = Replay().sse("llamacpp/chat_stream_context_exceeded_handwritten.sse")
    large = Replay().sse("openai/chat_stream.sse")
    chain = FallbackChat(
        [openai("llama-server", server, SMALL), openai("big", large, LARGE)],
        substitutes=[None, LARGE],
    )
    done = await answer(chain, ChatParams(model=SMALL))
    assert len(server.requests) == 1
    assert len(large.requests) == 1
    assert done.provider == "big"


async def test_after_an_overflow_no_larger_window_means_no_more_calls() -> None:
    server = Replay().sse("llamacpp/chat_stream_context_exceeded_handwritten.sse")
    same = Replay().sse("openai/chat_stream.sse")
    chain = FallbackChat(
        [
            openai("a", server, SMALL, max_context_tokens=8192),
            openai("b", same, SMALL, max_context_tokens=8192),
        ]
    )
    with pytest.raises(ProviderError) as info:
        await answer(chain, ChatParams(model=SMALL))
    assert info.value.code is ErrorCode.CONTEXT_LENGTH_EXCEEDED
    assert not info.value.retryable
    assert same.requests == []
    assert "no larger than the 8192-token one" in info.value.detail


async def test_when_no_link_is_large_enough_the_job_fails_at_once() -> None:
    a, b = Replay().sse("openai/chat_stream.sse"), Replay().sse("openai/chat_stream.sse")
    chain = FallbackChat(
        [
            openai("a", a, SMALL, max_context_tokens=1024),
            openai("b", b, SMALL, max_context_tokens=2048),
        ]
    )
    with pytest.raises(ProviderError) as info:
        await answer(chain, ChatParams(model=SMALL))
    assert info.value.code is ErrorCode.CONTEXT_LENGTH_EXCEEDED
    assert a.requests == b.requests == []


async def test_an_overflow_beside_an_outage_stays_retryable() -> None:
    down = Replay().json(503, "openai/error_500.json")
    small = Replay().sse("openai/chat_stream.sse")
    chain = FallbackChat(
        [openai("big", down, SMALL), openai("edge", small, SMALL, max_context_tokens=1024)]
    )
    with pytest.raises(ProviderError) as info:
        await answer(chain, ChatParams(model=SMALL))
    assert info.value.code is ErrorCode.PROVIDER_DOWN  # the large one may be back later


async def test_the_catalogue_gives_each_links_model_its_window() -> None:
    catalogue = ModelCatalogue(
        [
            ModelEntry(name=SMALL, context_tokens=2048),
            ModelEntry(name=LARGE, provider="big", context_tokens=131_072, tools=False),
        ]
    )
    chain = chat_providers.create(
        "fallback",
        {
            "providers": [
                {"name": "openai", "config": {"name": "edge", "models": [SMALL]}},
                {"name": "openai", "config": {"name": "big", "models": [LARGE]}, "model": LARGE},
            ]
        },
        Shared(models=catalogue),
    )
    try:
        assert isinstance(chain, FallbackChat)
        assert all(isinstance(link, CataloguedChat) for link in chain.providers)
        caps = chain.capabilities.for_model(SMALL)
        assert caps.max_context_tokens == 131_072
        assert caps.tools  # the small model's link has them
        assert not chain.capabilities.for_model(LARGE).tools
        with pytest.raises(ProviderError) as info:
            # Only the large link could fit it, and there its model's window is 131,072;
            # the small one refuses, by its catalogue window, before any request.
            await anext(chain.stream_chat(LONG, ChatParams(model=SMALL, max_tokens=200_000)))
        assert info.value.code is ErrorCode.CONTEXT_LENGTH_EXCEEDED
        assert "2048-token context" in info.value.detail
        assert "131072-token context" in info.value.detail
    finally:
        await chain.aclose()
