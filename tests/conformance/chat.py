"""What every chat provider must do, asserted the same way for each (FastStream-style).

A provider's test module subclasses ChatProviderConformance, sets ``model`` (a model it
serves) and ``registry_name`` (its name in the chat registry: tests/unit/test_registry.py
holds every registered name to a subclass), and supplies the fixtures:

- ``provider``: answers every plain call (``MESSAGES`` or ``LONG_ASK``) with a text stream;
- ``failing_provider``: every call fails, with ``failure_code``;
- ``calls_made``: how many calls have reached the far side so far (an HTTP provider: the
  requests its ``Replay`` saw; the local model: the generations its engine began; a
  fallback chain: the sum over its links);
- ``open_calls``: how many of those are still open now (a response not yet closed, an
  engine still decoding in its thread);
- ``tool_call_provider``, for a provider whose capabilities have tools: answers a call
  offering ``TOOLS`` with a stream that calls them (a recorded tool-call stream).

Nothing here knows how a provider reaches its model: HTTP, a model in this process, or a
chain of others all answer to the same checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Callable
from typing import Any, ClassVar

import pytest

from contracts.content import ImagePart, ImageUrl, TextPart
from contracts.errors import ErrorCode
from contracts.generate import ChatMessage, ToolCall, ToolSpec
from contracts.response_format import ResponseFormatJsonObject
from contracts.usage import Usage
from providers.chat.base import (
    ChatDone,
    ChatEvent,
    ChatParams,
    ChatProvider,
    TextPiece,
    ToolCallPiece,
)
from providers.chat.support import OPTIONS
from providers.errors import ProviderError

# How many calls reached the far side, or are open there now.
Counter = Callable[[], int]

# A value the contract accepts for each optional field.
OPTION_VALUES = {"seed": 1, "presence_penalty": 0.5, "frequency_penalty": 0.5, "user": "u-1"}

MESSAGES = [
    ChatMessage(role="system", content="You are terse."),
    ChatMessage(role="user", content="Hello"),
]
# A question with a long answer: a stream still running when the reader leaves it.
LONG_ASK = [ChatMessage(role="user", content="Count from 1 to 100, one number a line.")]
LONG_ANSWER_TOKENS = 200
# A conversation whose speakers are named (ChatMessage.name).
NAMED = [
    ChatMessage(role="user", content="Hello from Ada", name="ada"),
    ChatMessage(role="user", content="And from Grace", name="grace"),
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
# The tools a tool-call stream fixture calls (the recorded OpenAI and Anthropic streams).
TOOLS = [
    ToolSpec(
        name="get_weather",
        description="Current weather",
        parameters={"type": "object", "properties": {"location": {"type": "string"}}},
    ),
    ToolSpec(
        name="get_time",
        description="Current time",
        parameters={"type": "object", "properties": {"tz": {"type": "string"}}},
    ),
]
ASK_TOOLS = [ChatMessage(role="user", content="What is the weather in Paris, and the time?")]
# A conversation that already holds a tool call and its result.
TOOL_TURNS = [
    ChatMessage(role="user", content="Weather in Oslo?"),
    ChatMessage(
        role="assistant",
        content="",
        tool_calls=[ToolCall(id="call_0", name="get_weather", arguments='{"location":"Oslo"}')],
    ),
    ChatMessage(role="tool", content="3 degrees", tool_call_id="call_0"),
]


async def collect(provider: ChatProvider, params: ChatParams) -> list[ChatEvent]:
    return [event async for event in provider.stream_chat(MESSAGES, params)]


async def collect_text(provider: ChatProvider, params: ChatParams, seen: list[str]) -> None:
    """Stream to the end, keeping the text in ``seen`` even if the stream then fails."""
    async for event in provider.stream_chat(MESSAGES, params):
        if isinstance(event, TextPiece):
            seen.append(event.text)


def assert_usage_consistent(usage: Usage, *, reported: bool) -> None:
    """Counts that add up; from a provider that reports usage, real ones, not estimates."""
    assert usage.prompt_tokens >= 0
    assert usage.completion_tokens >= 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if usage.cached_tokens is not None:
        assert 0 <= usage.cached_tokens <= usage.prompt_tokens
    if usage.reasoning_tokens is not None:
        assert 0 <= usage.reasoning_tokens <= usage.completion_tokens
    # The deprecated names read the same values.
    assert (usage.input_tokens, usage.output_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    if reported:
        assert usage.prompt_tokens > 0
        assert usage.completion_tokens > 0
        assert not usage.estimated  # the provider counted them: only the worker estimates


class ChatProviderConformance:
    model: ClassVar[str]
    registry_name: ClassVar[str]
    # How the ``provider`` fixture's plain answer ends ("length" for a model cut short by
    # ``call_fields``' max_tokens).
    finish_reason: ClassVar[str] = "stop"
    # What ``failing_provider`` fails with.
    failure_code: ClassVar[ErrorCode] = ErrorCode.AUTH
    # False for a provider whose far side reports no token counts (the worker estimates).
    reports_usage: ClassVar[bool] = True
    # Fields every call of the suite sets (a local model: a small max_tokens, greedy).
    call_fields: ClassVar[dict[str, Any]] = {}

    def params(self, **fields: Any) -> ChatParams:
        return ChatParams(**{"model": self.model, **self.call_fields, **fields})

    @pytest.fixture
    def provider(self) -> ChatProvider:
        raise NotImplementedError("a conformance subclass provides `provider`")

    @pytest.fixture
    def failing_provider(self) -> ChatProvider:
        raise NotImplementedError("a conformance subclass provides `failing_provider`")

    @pytest.fixture
    def calls_made(self) -> Counter:
        raise NotImplementedError("a conformance subclass provides `calls_made`")

    @pytest.fixture
    def open_calls(self) -> Counter:
        raise NotImplementedError("a conformance subclass provides `open_calls`")

    @pytest.fixture
    def tool_call_provider(self) -> ChatProvider | None:
        """None for a provider without tools; one with tools must provide it."""
        return None

    def test_satisfies_the_protocol(self, provider: ChatProvider) -> None:
        assert isinstance(provider, ChatProvider)
        assert provider.name
        assert self.model in provider.capabilities.models
        assert provider.capabilities.for_model(self.model).streaming

    async def test_streams_text_then_exactly_one_done(
        self, provider: ChatProvider, calls_made: Counter, open_calls: Counter
    ) -> None:
        stream = provider.stream_chat(MESSAGES, self.params())
        events: list[ChatEvent] = []
        async for event in stream:
            events.append(event)
            if isinstance(event, ChatDone):
                break
        # Nothing after the ChatDone: the stream ends there.
        with pytest.raises(StopAsyncIteration):
            await anext(aiter(stream))
        assert len(events) >= 2
        assert all(isinstance(e, TextPiece) and e.text for e in events[:-1])
        done = events[-1]
        assert isinstance(done, ChatDone)
        assert done.finish_reason == self.finish_reason
        assert not done.tool_calls
        assert calls_made() >= 1
        assert open_calls() == 0

    async def test_usage_adds_up(self, provider: ChatProvider) -> None:
        done = (await collect(provider, self.params()))[-1]
        assert isinstance(done, ChatDone)
        assert_usage_consistent(done.usage, reported=self.reports_usage)

    async def test_tools_are_called_or_refused_with_a_type(
        self,
        provider: ChatProvider,
        tool_call_provider: ChatProvider | None,
        calls_made: Counter,
    ) -> None:
        if provider.capabilities.for_model(self.model).tools:
            assert tool_call_provider is not None, "a provider with tools provides one"
            await self._assert_tool_calls_assembled(tool_call_provider)
            return
        for messages, params in (
            (ASK_TOOLS, self.params(tools=TOOLS)),
            (ASK_TOOLS, self.params(tool_choice="auto")),
            (TOOL_TURNS, self.params()),
        ):
            with pytest.raises(ProviderError) as info:
                async for _ in provider.stream_chat(messages, params):
                    pass
            assert info.value.code is ErrorCode.INVALID_INPUT
            assert "does not support tools" in info.value.detail
        assert calls_made() == 0

    async def _assert_tool_calls_assembled(self, provider: ChatProvider) -> None:
        events = [e async for e in provider.stream_chat(ASK_TOOLS, self.params(tools=TOOLS))]
        *pieces, done = events
        assert all(isinstance(e, TextPiece | ToolCallPiece) for e in pieces)
        assert isinstance(done, ChatDone)
        assert done.finish_reason == "tool_calls"
        assert done.tool_calls
        assert_usage_consistent(done.usage, reported=self.reports_usage)
        # ChatDone holds each call whole, as its pieces said it.
        by_index: dict[int, list[ToolCallPiece]] = {}
        for piece in pieces:
            if isinstance(piece, ToolCallPiece):
                by_index.setdefault(piece.index, []).append(piece)
        assert sorted(by_index) == list(range(len(done.tool_calls)))
        for index, call in enumerate(done.tool_calls):
            first, *rest = by_index[index]
            assert (first.id, first.name) == (call.id, call.name)
            assert all(p.id is None and p.name is None for p in rest)  # said once
            assert ("".join(p.arguments for p in by_index[index]) or "{}") == call.arguments
            assert call.name in {tool.name for tool in TOOLS}
            assert isinstance(json.loads(call.arguments), dict)
        assert len({call.id for call in done.tool_calls}) == len(done.tool_calls)

    async def test_what_it_cannot_honour_is_refused_before_any_call(
        self, provider: ChatProvider, calls_made: Counter
    ) -> None:
        capabilities = provider.capabilities.for_model(self.model)
        lacking = [
            self.params(**{option: OPTION_VALUES[option]})
            for option in OPTIONS
            if option not in capabilities.options
        ]
        if not capabilities.json_schema:
            lacking.append(self.params(response_format=ResponseFormatJsonObject()))
        for params in lacking:
            with pytest.raises(ProviderError) as info:
                await collect(provider, params)
            assert info.value.code is ErrorCode.INVALID_INPUT
            assert "does not support" in info.value.detail
        if not capabilities.vision:
            with pytest.raises(ProviderError) as info:
                async for _ in provider.stream_chat(LOOK, self.params()):
                    pass
            assert info.value.code is ErrorCode.INVALID_INPUT
            assert "does not support images" in info.value.detail
        if not capabilities.names:
            with pytest.raises(ProviderError) as info:
                async for _ in provider.stream_chat(NAMED, self.params()):
                    pass
            assert info.value.code is ErrorCode.INVALID_INPUT
            assert "speaker names" in info.value.detail
        assert calls_made() == 0

    async def test_closing_the_stream_early_releases_the_provider(
        self, provider: ChatProvider, calls_made: Counter, open_calls: Counter
    ) -> None:
        stream = provider.stream_chat(LONG_ASK, self.params(max_tokens=LONG_ANSWER_TOKENS))
        assert isinstance(stream, AsyncGenerator)  # closable: aclose
        first = await anext(stream)
        assert isinstance(first, TextPiece)
        assert open_calls() == 1  # still answering
        await stream.aclose()
        assert open_calls() == 0  # released before aclose returns
        made = calls_made()
        assert made >= 1
        # The provider is still usable afterwards.
        events = await collect(provider, self.params())
        assert isinstance(events[-1], ChatDone)
        assert calls_made() > made
        assert open_calls() == 0

    async def test_cancelling_the_reader_releases_the_provider(
        self, provider: ChatProvider, open_calls: Counter
    ) -> None:
        stream = provider.stream_chat(LONG_ASK, self.params(max_tokens=LONG_ANSWER_TOKENS))
        seen: list[ChatEvent] = []
        started = asyncio.Event()

        async def read() -> None:
            # Nothing else awaits here: the cancel lands inside the provider's stream.
            async for event in stream:
                seen.append(event)
                started.set()

        reader = asyncio.create_task(read())
        await started.wait()
        assert open_calls() == 1
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        assert reader.cancelled()
        assert not any(isinstance(e, ChatDone) for e in seen)
        assert open_calls() == 0
        events = await collect(provider, self.params())
        assert isinstance(events[-1], ChatDone)
        assert open_calls() == 0

    async def test_errors_are_provider_errors_with_a_code(
        self, failing_provider: ChatProvider
    ) -> None:
        with pytest.raises(ProviderError) as info:
            await collect(failing_provider, self.params())
        assert info.value.code is self.failure_code
        assert info.value.retryable is self.failure_code.retryable
        assert info.value.op
        assert info.value.detail

    async def test_unknown_model_is_not_found(
        self, provider: ChatProvider, calls_made: Counter
    ) -> None:
        with pytest.raises(ProviderError) as info:
            await collect(provider, self.params(model="no-such-model"))
        assert info.value.code is ErrorCode.NOT_FOUND
        assert not info.value.retryable
        assert "no-such-model" in info.value.detail
        assert calls_made() == 0
