"""What every chat provider must do, asserted the same way for each (FastStream-style).

A provider's test module subclasses ChatProviderConformance and supplies the fixtures:
``provider`` (serves ``model`` and answers with a recorded text stream, over ``replay``),
``failing_provider`` (every call is refused with HTTP 401) and ``replay``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import ClassVar

import pytest

from contracts.content import ImagePart, ImageUrl, TextPart
from contracts.errors import ErrorCode
from contracts.generate import ChatMessage, ToolSpec
from contracts.response_format import ResponseFormatJsonObject
from providers.chat.base import ChatDone, ChatEvent, ChatParams, ChatProvider, TextPiece
from providers.chat.support import OPTIONS
from providers.errors import ProviderError
from tests.unit.providers import Replay

# A value the contract accepts for each optional field.
OPTION_VALUES = {"seed": 1, "presence_penalty": 0.5, "frequency_penalty": 0.5, "user": "u-1"}

MESSAGES = [
    ChatMessage(role="system", content="You are terse."),
    ChatMessage(role="user", content="Hello"),
]
LOOK = [
    ChatMessage(
        role="user",
        content=[
            TextPart(text="What is this?"),
            ImagePart(image_url=ImageUrl(url="https://example.com/a.png")),
        ],
    )
]


async def collect(provider: ChatProvider, params: ChatParams) -> list[ChatEvent]:
    return [event async for event in provider.stream_chat(MESSAGES, params)]


async def collect_text(provider: ChatProvider, params: ChatParams, seen: list[str]) -> None:
    """Stream to the end, keeping the text in ``seen`` even if the stream then fails."""
    async for event in provider.stream_chat(MESSAGES, params):
        if isinstance(event, TextPiece):
            seen.append(event.text)


class ChatProviderConformance:
    model: ClassVar[str]

    @pytest.fixture
    def replay(self) -> Replay:
        raise NotImplementedError("a conformance subclass provides `replay`")

    @pytest.fixture
    def provider(self, replay: Replay) -> ChatProvider:
        raise NotImplementedError("a conformance subclass provides `provider`")

    @pytest.fixture
    def failing_provider(self) -> ChatProvider:
        raise NotImplementedError("a conformance subclass provides `failing_provider`")

    def test_satisfies_the_protocol(self, provider: ChatProvider) -> None:
        assert isinstance(provider, ChatProvider)
        assert self.model in provider.capabilities.models
        assert provider.capabilities.streaming

    async def test_streams_text_then_exactly_one_done(self, provider: ChatProvider) -> None:
        events = await collect(provider, ChatParams(model=self.model))
        assert isinstance(events[0], TextPiece)
        assert all(isinstance(e, TextPiece) for e in events[:-1])
        done = events[-1]
        assert isinstance(done, ChatDone)
        assert sum(isinstance(e, ChatDone) for e in events) == 1
        assert done.finish_reason == "stop"
        assert done.usage.prompt_tokens > 0
        assert done.usage.completion_tokens > 0

    async def test_closing_the_stream_early_releases_the_response(
        self, provider: ChatProvider, replay: Replay
    ) -> None:
        stream = provider.stream_chat(MESSAGES, ChatParams(model=self.model))
        assert isinstance(stream, AsyncGenerator)
        first = await anext(stream)
        assert isinstance(first, TextPiece)
        await stream.aclose()
        assert replay.opened == replay.closed == 1
        # The provider is still usable afterwards.
        events = await collect(provider, ChatParams(model=self.model))
        assert isinstance(events[-1], ChatDone)
        assert replay.opened == replay.closed == 2

    async def test_errors_are_provider_errors_with_a_code(
        self, failing_provider: ChatProvider
    ) -> None:
        with pytest.raises(ProviderError) as info:
            await collect(failing_provider, ChatParams(model=self.model))
        assert info.value.code is ErrorCode.AUTH
        assert not info.value.retryable

    async def test_unknown_model_is_not_found(self, provider: ChatProvider, replay: Replay) -> None:
        with pytest.raises(ProviderError) as info:
            await collect(provider, ChatParams(model="no-such-model"))
        assert info.value.code is ErrorCode.NOT_FOUND
        assert replay.requests == []

    async def test_what_it_cannot_honour_is_refused_before_any_request(
        self, provider: ChatProvider, replay: Replay
    ) -> None:
        capabilities = provider.capabilities
        lacking = [
            ChatParams(model=self.model, **{option: OPTION_VALUES[option]})  # type: ignore[arg-type]
            for option in OPTIONS
            if option not in capabilities.options
        ]
        if not capabilities.tools:
            lacking.append(ChatParams(model=self.model, tools=[ToolSpec(name="get_time")]))
        if not capabilities.json_schema:
            lacking.append(ChatParams(model=self.model, response_format=ResponseFormatJsonObject()))
        for params in lacking:
            with pytest.raises(ProviderError) as info:
                await collect(provider, params)
            assert info.value.code is ErrorCode.INVALID_INPUT
            assert "does not support" in info.value.detail
        if not capabilities.vision:
            with pytest.raises(ProviderError) as info:
                async for _ in provider.stream_chat(LOOK, ChatParams(model=self.model)):
                    pass
            assert info.value.code is ErrorCode.INVALID_INPUT
            assert "does not support images" in info.value.detail
        assert replay.requests == []
