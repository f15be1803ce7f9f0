"""local-llama on the real SmolLM2 through llama.cpp (cyllama's prebuilt wheel), in this
process: the interface every chat provider keeps, and the engine's own limits."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from contracts.errors import ErrorCode
from contracts.generate import ChatMessage
from providers.chat import ChatDone, ChatEvent, ChatParams, ChatProvider, TextPiece, chat_providers
from providers.chat.local_llama import SMOLLM2_MODEL
from providers.errors import ProviderError

pytestmark = [pytest.mark.model]

ASK = [ChatMessage(role="user", content="Name three colours of the rainbow.")]


@pytest.fixture(scope="module")
async def chat() -> AsyncIterator[ChatProvider]:
    provider = chat_providers.create("local-llama", {"n_ctx": 512})
    await provider.load()  # loads the weights and makes its one-token self-check
    yield provider
    await provider.aclose()


async def _events(chat: ChatProvider, params: ChatParams) -> list[ChatEvent]:
    return [event async for event in chat.stream_chat(ASK, params)]


async def test_streams_text_then_exactly_one_done_with_usage(chat: ChatProvider) -> None:
    assert isinstance(chat, ChatProvider)
    events = await _events(chat, ChatParams(model=SMOLLM2_MODEL, max_tokens=12, temperature=0))
    assert all(isinstance(e, TextPiece) for e in events[:-1])
    assert "".join(e.text for e in events if isinstance(e, TextPiece)).strip()
    done = events[-1]
    assert isinstance(done, ChatDone)
    assert done.finish_reason == "length"
    assert done.usage.output_tokens == 12
    assert done.usage.input_tokens > len(ASK[0].content.split())


async def test_greedy_decoding_repeats_itself(chat: ChatProvider) -> None:
    params = ChatParams(model=SMOLLM2_MODEL, max_tokens=16, temperature=0)
    first, second = await _events(chat, params), await _events(chat, params)
    assert first == second


async def test_a_stop_sequence_ends_the_answer_before_it(chat: ChatProvider) -> None:
    params = ChatParams(model=SMOLLM2_MODEL, max_tokens=40, temperature=0)
    text = "".join(e.text for e in await _events(chat, params) if isinstance(e, TextPiece))
    stop = text.split()[2]  # a word the greedy answer is known to reach
    cut = await _events(chat, ChatParams(model=SMOLLM2_MODEL, max_tokens=40, temperature=0,
                                         stop=[stop]))  # fmt: skip
    cut_text = "".join(e.text for e in cut if isinstance(e, TextPiece))
    assert stop not in cut_text
    assert text.startswith(cut_text)
    done = cut[-1]
    assert isinstance(done, ChatDone)
    assert done.finish_reason == "stop"


async def test_leaving_early_frees_the_model_for_the_next_call(chat: ChatProvider) -> None:
    stream = chat.stream_chat(ASK, ChatParams(model=SMOLLM2_MODEL, max_tokens=200))
    assert isinstance(await anext(stream), TextPiece)
    await stream.aclose()  # type: ignore[attr-defined]
    events = await _events(chat, ChatParams(model=SMOLLM2_MODEL, max_tokens=4))
    assert isinstance(events[-1], ChatDone)


async def test_an_unknown_model_is_not_found(chat: ChatProvider) -> None:
    with pytest.raises(ProviderError) as info:
        await _events(chat, ChatParams(model="gpt-4o"))
    assert info.value.code is ErrorCode.NOT_FOUND


async def test_a_prompt_longer_than_the_context_is_invalid_input(chat: ChatProvider) -> None:
    long = [ChatMessage(role="user", content="word " * 2000)]
    with pytest.raises(ProviderError) as info:
        async for _ in chat.stream_chat(long, ChatParams(model=SMOLLM2_MODEL)):
            pass
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert "context holds 512" in info.value.detail
