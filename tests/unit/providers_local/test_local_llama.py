"""local-llama on the real SmolLM2 through llama.cpp (cyllama's prebuilt wheel), in this
process: the interface every chat provider keeps, and the engine's own limits."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from contracts.content import text_of
from contracts.errors import ErrorCode
from contracts.generate import ChatMessage, ToolCall, ToolSpec
from providers.catalogue import ModelCatalogue, ModelEntry
from providers.chat import ChatDone, ChatEvent, ChatParams, ChatProvider, TextPiece, chat_providers
from providers.chat.catalogued import with_catalogue
from providers.chat.context import CountsTokens
from providers.chat.local_llama import SMOLLM2_MODEL, LocalLlamaChat
from providers.errors import ProviderError
from providers.shared import Shared

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
    assert done.usage.completion_tokens == 12
    assert done.usage.prompt_tokens > len(text_of(ASK[0].content).split())


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


async def test_a_prompt_longer_than_the_context_is_context_length_exceeded(
    chat: ChatProvider,
) -> None:
    long = [ChatMessage(role="user", content="word " * 2000)]
    with pytest.raises(ProviderError) as info:
        async for _ in chat.stream_chat(long, ChatParams(model=SMOLLM2_MODEL)):
            pass
    assert info.value.code is ErrorCode.CONTEXT_LENGTH_EXCEEDED
    assert not info.value.retryable
    assert "512-token context" in info.value.detail


async def test_max_tokens_that_do_not_fit_after_the_prompt_are_refused_before_decoding(
    chat: ChatProvider,
) -> None:
    assert isinstance(chat, CountsTokens)
    prompt = chat.count_prompt_tokens(ASK, SMOLLM2_MODEL)
    assert prompt is not None
    room = 512 - prompt  # n_ctx of the fixture
    events = await _events(chat, ChatParams(model=SMOLLM2_MODEL, max_tokens=2, temperature=0))
    done = events[-1]
    assert isinstance(done, ChatDone)
    assert done.usage.prompt_tokens == prompt  # the count is the engine's own
    fits = await _events(chat, ChatParams(model=SMOLLM2_MODEL, max_tokens=room, stop=["."]))
    assert isinstance(fits[-1], ChatDone)
    with pytest.raises(ProviderError) as info:
        await _events(chat, ChatParams(model=SMOLLM2_MODEL, max_tokens=room + 1))
    assert info.value.code is ErrorCode.CONTEXT_LENGTH_EXCEEDED
    assert f"the prompt is {prompt} tokens and the answer may take" in info.value.detail
    assert chat.count_text_tokens("Hello world", SMOLLM2_MODEL) == 2


async def test_a_catalogue_window_is_held_with_the_models_own_count(chat: ChatProvider) -> None:
    assert isinstance(chat, CountsTokens)
    prompt = chat.count_prompt_tokens(ASK, SMOLLM2_MODEL)
    assert prompt is not None
    catalogue = ModelCatalogue([ModelEntry(name=SMOLLM2_MODEL, context_tokens=prompt + 8)])
    narrowed = with_catalogue(chat, catalogue)
    assert narrowed.capabilities.for_model(SMOLLM2_MODEL).max_context_tokens == prompt + 8
    events = await _events(narrowed, ChatParams(model=SMOLLM2_MODEL, max_tokens=8))
    assert isinstance(events[-1], ChatDone)
    with pytest.raises(ProviderError) as info:
        await _events(narrowed, ChatParams(model=SMOLLM2_MODEL, max_tokens=9))
    assert info.value.code is ErrorCode.CONTEXT_LENGTH_EXCEEDED
    assert f"the prompt is {prompt} tokens and" in info.value.detail  # counted, not estimated


def _text(events: list[ChatEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextPiece))


async def test_a_seed_makes_sampled_answers_reproducible(chat: ChatProvider) -> None:
    story = [ChatMessage(role="user", content="Tell me a story about a dog.")]

    async def sampled(seed: int) -> str:
        params = ChatParams(model=SMOLLM2_MODEL, max_tokens=16, temperature=1.0, seed=seed)
        return _text([event async for event in chat.stream_chat(story, params)])

    first = await sampled(1)
    assert await sampled(1) == first
    assert await sampled(2) != first
    assert await sampled(2**40) != first  # seeds past 32 bits still count


@pytest.mark.parametrize("penalty", ["frequency_penalty", "presence_penalty"])
async def test_a_penalty_holds_back_repeated_tokens(chat: ChatProvider, penalty: str) -> None:
    repeat = [
        ChatMessage(role="user", content="Write the word 'cat' twenty times, separated by spaces.")
    ]
    plain = ChatParams(model=SMOLLM2_MODEL, max_tokens=30, temperature=0)
    penalised = msgspec.structs.replace(plain, **{penalty: 2.0})
    before = _text([e async for e in chat.stream_chat(repeat, plain)])
    after = _text([e async for e in chat.stream_chat(repeat, penalised)])
    assert after != before
    assert _repeats(after) < _repeats(before)


def _repeats(text: str) -> int:
    words = text.lower().split()
    return len(words) - len(set(words))


@pytest.mark.parametrize(
    ("params", "messages", "lacking"),
    [
        (ChatParams(model=SMOLLM2_MODEL, tools=[ToolSpec(name="get_time")]), ASK, "tools"),
        (
            ChatParams(model=SMOLLM2_MODEL),
            [
                *ASK,
                ChatMessage(
                    role="assistant",
                    content="",
                    tool_calls=[ToolCall(id="c1", name="get_time", arguments="{}")],
                ),
                ChatMessage(role="tool", content="12:00", tool_call_id="c1"),
            ],
            "tools",
        ),
        (ChatParams(model=SMOLLM2_MODEL, user="u-1"), ASK, "user"),
    ],
)
async def test_what_it_cannot_honour_is_refused_by_name(
    chat: ChatProvider, params: ChatParams, messages: list[ChatMessage], lacking: str
) -> None:
    with pytest.raises(ProviderError) as info:
        async for _ in chat.stream_chat(messages, params):
            pass
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert f"it does not support {lacking}" in info.value.detail
    assert not chat.capabilities.tools


async def test_the_model_decodes_on_the_workers_share_of_the_cores() -> None:
    """A worker's model_threads (what `fleet dev` sets for several model workers) reaches
    llama.cpp when the provider's config names no n_threads."""
    provider = chat_providers.create("local-llama", {"n_ctx": 256}, Shared(model_threads=1))
    assert isinstance(provider, LocalLlamaChat)
    await provider.load()
    try:
        assert provider.threads == 1
    finally:
        await provider.aclose()
