"""The fallback chain through the chat conformance suite: over two HTTP providers (the
first down, so every call moves on to the second), and over an HTTP provider and a scripted
one, both without tools, images, structured output or options (so the chain refuses those
before calling any link)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest

from contracts.errors import ErrorCode
from contracts.generate import ChatMessage
from contracts.usage import Usage
from providers.chat.anthropic import AnthropicChat, AnthropicChatConfig
from providers.chat.base import ChatCapabilities, ChatDone, ChatEvent, ChatParams, TextPiece
from providers.chat.fallback import FallbackChat
from providers.chat.openai_compat import OpenAIChat, OpenAIChatConfig
from providers.chat.support import require_support
from providers.errors import ProviderError
from providers.registry import parse_config
from tests.conformance.chat import MESSAGES, ChatProviderConformance, Counter
from tests.unit.providers import FakeClock, FakeSleep, Replay

MODEL = "llama-3.1-8b-instruct"
CLAUDE = "claude-sonnet-4-5"
NARROWED: dict[str, Any] = {"vision": False, "json_schema": False, "tools": False, "options": []}


def openai(name: str, replay: Replay, **extra: Any) -> OpenAIChat:
    raw: dict[str, Any] = {"name": name, "models": [MODEL], "retry": {"max_attempts": 1}, **extra}
    config = parse_config(name, raw, OpenAIChatConfig)
    return OpenAIChat(config, transport=replay.transport(), sleep=FakeSleep(), clock=FakeClock())


def anthropic(replay: Replay) -> AnthropicChat:
    raw: dict[str, Any] = {"models": [CLAUDE], "retry": {"max_attempts": 1}}
    config = parse_config("anthropic", raw, AnthropicChatConfig)
    return AnthropicChat(config, transport=replay.transport(), sleep=FakeSleep(), clock=FakeClock())


def down() -> Replay:
    return Replay().json(503, "openai/error_500.json")


class ScriptedChat:
    """A chat provider of the test: a fixed answer, piece by piece (each after a pause in
    which other tasks run), counting the calls it takes and the streams still open."""

    name = "scripted"

    def __init__(self, model: str) -> None:
        self._model = model
        self.calls = 0
        self.open = 0

    @property
    def capabilities(self) -> ChatCapabilities:
        return ChatCapabilities(models=(self._model,))

    async def stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncGenerator[ChatEvent, None]:
        if params.model != self._model:
            raise ProviderError(ErrorCode.NOT_FOUND, "scripted.chat", f"no {params.model!r}")
        require_support(self.capabilities, messages, params, provider=self.name, op="chat")
        self.calls += 1
        self.open += 1
        try:
            for text in ("Hello", " from", " the script"):
                await asyncio.sleep(0)
                yield TextPiece(text)
            yield ChatDone(finish_reason="stop", usage=Usage(prompt_tokens=7, completion_tokens=3))
        finally:
            self.open -= 1

    async def load(self) -> None:
        pass

    async def health(self) -> bool:
        return True

    async def aclose(self) -> None:
        pass


class TestChatConformanceOverTwoHttpLinks(ChatProviderConformance):
    """OpenAI-compatible first (down: 503), then Anthropic standing in for the model."""

    model = MODEL
    registry_name = "fallback"

    @pytest.fixture
    def primary(self) -> Replay:
        return down()

    @pytest.fixture
    def secondary(self) -> Replay:
        return Replay().sse("anthropic/messages_stream.sse")

    @staticmethod
    def chain(primary: Replay, secondary: Replay) -> FallbackChat:
        return FallbackChat(
            [openai("primary", primary), anthropic(secondary)], substitutes=[None, CLAUDE]
        )

    @pytest.fixture
    async def provider(self, primary: Replay, secondary: Replay) -> AsyncIterator[FallbackChat]:
        chain = self.chain(primary, secondary)
        yield chain
        await chain.aclose()

    @pytest.fixture
    def calls_made(self, primary: Replay, secondary: Replay) -> Counter:
        return lambda: len(primary.requests) + len(secondary.requests)

    @pytest.fixture
    def open_calls(self, primary: Replay, secondary: Replay) -> Counter:
        return lambda: primary.open_responses() + secondary.open_responses()

    @pytest.fixture
    async def tool_call_provider(self) -> AsyncIterator[FallbackChat]:
        chain = self.chain(down(), Replay().sse("anthropic/messages_stream_tools.sse"))
        yield chain
        await chain.aclose()

    @pytest.fixture
    async def failing_provider(self) -> AsyncIterator[FallbackChat]:
        # Refused for good by the first link: the chain does not hide it behind the second.
        chain = self.chain(
            Replay().json(401, "openai/error_401_invalid_api_key.json"),
            Replay().sse("anthropic/messages_stream.sse"),
        )
        yield chain
        await chain.aclose()

    async def test_every_answer_came_from_the_second_link(self, provider: FallbackChat) -> None:
        events = [e async for e in provider.stream_chat(MESSAGES, ChatParams(model=MODEL))]
        done = events[-1]
        assert isinstance(done, ChatDone)
        assert (done.provider, done.model) == ("anthropic", CLAUDE)


class TestChatConformanceOverNarrowedLinks(ChatProviderConformance):
    """An OpenAI-compatible server without tools, images, structured output or options,
    then a scripted provider without them either: the chain can honour none of them."""

    model = MODEL
    registry_name = "fallback"

    @pytest.fixture
    def replay(self) -> Replay:
        return Replay().sse("openai/chat_stream.sse")

    @pytest.fixture
    def scripted(self) -> ScriptedChat:
        return ScriptedChat(MODEL)

    @pytest.fixture
    async def provider(self, replay: Replay, scripted: ScriptedChat) -> AsyncIterator[FallbackChat]:
        chain = FallbackChat([openai("narrowed", replay, **NARROWED), scripted])
        yield chain
        await chain.aclose()

    @pytest.fixture
    def calls_made(self, replay: Replay, scripted: ScriptedChat) -> Counter:
        return lambda: len(replay.requests) + scripted.calls

    @pytest.fixture
    def open_calls(self, replay: Replay, scripted: ScriptedChat) -> Counter:
        return lambda: replay.open_responses() + scripted.open

    @pytest.fixture
    async def failing_provider(self, scripted: ScriptedChat) -> AsyncIterator[FallbackChat]:
        refused = Replay().json(401, "openai/error_401_invalid_api_key.json")
        chain = FallbackChat([openai("narrowed", refused, **NARROWED), scripted])
        yield chain
        await chain.aclose()
