"""local-llama's lanes on the real SmolLM2: a batch answer that has begun pauses between
tokens while an interactive call runs (on a context of its own, so it resumes where it
was, with the same text), and a paused batch call can still be cancelled. Assertions are
on which call ended first, never on timing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from contracts.generate import ChatMessage
from providers.chat import ChatDone, ChatParams, TextPiece, chat_providers
from providers.chat.local_llama import SMOLLM2_MODEL, LocalLlamaChat

pytestmark = [pytest.mark.model]

COUNT = [ChatMessage(role="user", content="Write the numbers from 1 to 100, separated by commas.")]
HI = [ChatMessage(role="user", content="Say hello.")]
BATCH = ChatParams(model=SMOLLM2_MODEL, max_tokens=48, temperature=0, lane="batch")
INTERACTIVE = ChatParams(model=SMOLLM2_MODEL, max_tokens=6, temperature=0)


async def _provider(**config: object) -> LocalLlamaChat:
    provider = chat_providers.create("local-llama", {"n_ctx": 512, **config})
    assert isinstance(provider, LocalLlamaChat)
    await provider.load()
    return provider


@pytest.fixture(scope="module")
async def chat() -> AsyncIterator[LocalLlamaChat]:
    provider = await _provider()
    yield provider
    await provider.aclose()


async def _answer(chat: LocalLlamaChat, messages: list[ChatMessage], params: ChatParams) -> str:
    pieces = []
    async for event in chat.stream_chat(messages, params):
        if isinstance(event, TextPiece):
            pieces.append(event.text)
        else:
            assert isinstance(event, ChatDone)
    return "".join(pieces)


async def _begun(chat: LocalLlamaChat, ended: list[str]) -> tuple[asyncio.Task[str], asyncio.Event]:
    """A batch call, running once its first piece is out."""
    first_piece = asyncio.Event()

    async def batch() -> str:
        pieces = []
        async for event in chat.stream_chat(COUNT, BATCH):
            if isinstance(event, TextPiece):
                pieces.append(event.text)
                first_piece.set()
            elif isinstance(event, ChatDone):
                assert event.finish_reason == "length"  # it had tokens left to make
        ended.append("batch")
        return "".join(pieces)

    task = asyncio.create_task(batch())
    await asyncio.wait_for(first_piece.wait(), timeout=60)
    return task, first_piece


async def test_an_interactive_call_ends_while_a_begun_batch_answer_waits(
    chat: LocalLlamaChat,
) -> None:
    alone = await _answer(chat, COUNT, BATCH)
    ended: list[str] = []
    batch, _ = await _begun(chat, ended)
    await _answer(chat, HI, INTERACTIVE)
    ended.append("interactive")
    assert await batch == alone  # paused and resumed on its own context: the same answer
    assert ended == ["interactive", "batch"]


async def test_a_paused_batch_call_can_be_cancelled(chat: LocalLlamaChat) -> None:
    ended: list[str] = []
    batch, _ = await _begun(chat, ended)
    stream = chat.stream_chat(HI, INTERACTIVE)
    assert isinstance(await anext(stream), TextPiece)  # the interactive call holds the model
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
    rest = [event async for event in stream]
    assert isinstance(rest[-1], ChatDone)
    assert ended == []


async def test_without_a_batch_context_a_begun_batch_answer_runs_to_its_end() -> None:
    chat = await _provider(batch_context=False)
    try:
        ended: list[str] = []
        batch, _ = await _begun(chat, ended)
        await _answer(chat, HI, INTERACTIVE)
        ended.append("interactive")
        await batch
    finally:
        await chat.aclose()
    assert ended == ["batch", "interactive"]  # no preemption: it waited its turn
