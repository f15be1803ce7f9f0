"""local-llama on the real SmolLM2 through the chat conformance suite. Its far side is the
engine in this process: an engine that counts the generations it begins and those still
decoding in their thread stands in for the HTTP replay's request log."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from contracts.errors import ErrorCode
from providers.chat import ChatProvider, TextPiece, chat_providers, local_llama
from providers.chat.llama_engine import Generated, LlamaEngine
from providers.chat.local_llama import SMOLLM2_MODEL
from tests.conformance.chat import (
    LONG_ANSWER_TOKENS,
    LONG_ASK,
    ChatProviderConformance,
    Counter,
)

pytestmark = [pytest.mark.model]

# Small and greedy: every call of the suite takes a fraction of a second.
CONFIG: dict[str, Any] = {"n_ctx": 512, "n_threads": 2}


class EngineProbe:
    """What the provider's engine did: generations begun, those still running (decoding in
    the provider's thread), and the counts each filled in."""

    def __init__(self) -> None:
        self.calls = 0
        self.running = 0
        self.results: list[Generated] = []


def counting_engine(probe: EngineProbe) -> type[LlamaEngine]:
    class CountingEngine(LlamaEngine):
        def stream(self, prompt: str, **kwargs: Any) -> Iterator[str]:
            probe.calls += 1
            probe.running += 1
            probe.results.append(kwargs["result"])
            try:
                yield from super().stream(prompt, **kwargs)
            finally:
                probe.running -= 1

    return CountingEngine


@pytest.fixture(scope="module")
def probe() -> EngineProbe:
    return EngineProbe()


@pytest.fixture(scope="module")
async def loaded(probe: EngineProbe) -> AsyncIterator[ChatProvider]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(local_llama, "LlamaEngine", counting_engine(probe))
        provider = chat_providers.create("local-llama", CONFIG)
        await provider.load()  # the weights, and the one-token self-check
    yield provider
    await provider.aclose()


class TestChatConformance(ChatProviderConformance):
    model = SMOLLM2_MODEL
    registry_name = "local-llama"
    finish_reason = "length"  # cut at call_fields' max_tokens
    failure_code = ErrorCode.PROVIDER_DOWN
    call_fields: ClassVar[dict[str, Any]] = {"max_tokens": 6, "temperature": 0}

    @pytest.fixture
    def provider(self, loaded: ChatProvider) -> ChatProvider:
        return loaded

    @pytest.fixture
    def calls_made(self, probe: EngineProbe) -> Counter:
        before = probe.calls
        return lambda: probe.calls - before

    @pytest.fixture
    def open_calls(self, probe: EngineProbe) -> Counter:
        return lambda: probe.running

    @pytest.fixture
    async def failing_provider(self, tmp_path: Path) -> AsyncIterator[ChatProvider]:
        # Weights that do not load: every call fails, typed, naming the file.
        broken = tmp_path / "broken.gguf"
        broken.write_bytes(b"not a model")
        provider = chat_providers.create("local-llama", {**CONFIG, "model_path": str(broken)})
        yield provider
        await provider.aclose()

    async def test_leaving_early_stops_the_decoding(
        self, provider: ChatProvider, probe: EngineProbe
    ) -> None:
        stream = provider.stream_chat(LONG_ASK, self.params(max_tokens=LONG_ANSWER_TOKENS))
        assert isinstance(stream, AsyncGenerator)
        assert isinstance(await anext(stream), TextPiece)
        await stream.aclose()
        generated = probe.results[-1]
        assert generated.finish_reason == "cancelled"
        decoded = generated.output_tokens
        assert decoded < LONG_ANSWER_TOKENS
        await asyncio.sleep(0.3)
        assert generated.output_tokens == decoded  # nothing decoded after aclose returned
        assert not [t for t in threading.enumerate() if t.name == "local-llama"]
