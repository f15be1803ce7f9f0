"""The embed worker's dynamic batcher: shared calls, order kept, limits held, errors shared."""

from __future__ import annotations

import asyncio

import pytest

from workers.handlers.embed_batching import DynamicBatcher
from workers.settings import EmbedBatching


class FakeModel:
    """Embeds a text as [len(text)] and records the batches it was called with."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    async def __call__(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        await asyncio.sleep(0.01)
        if self.fail:
            raise RuntimeError("model exploded")
        return [[float(len(t))] for t in texts]


async def test_concurrent_requests_share_calls_and_get_their_own_vectors() -> None:
    model = FakeModel()
    batcher = DynamicBatcher(model, EmbedBatching(max_texts=8, max_wait_ms=20))
    requests = [["a" * (i + 1), "b" * (i + 10)] for i in range(10)]
    results = await asyncio.gather(*(batcher.embed(texts) for texts in requests))
    await batcher.aclose()
    for texts, vectors in zip(requests, results, strict=True):
        assert vectors == [[float(len(t))] for t in texts]
    assert all(len(call) <= 8 for call in model.calls)
    assert len(model.calls) < len(requests)
    assert sum(len(call) for call in model.calls) == 20


async def test_a_large_request_is_split_and_reassembled_in_order() -> None:
    model = FakeModel()
    batcher = DynamicBatcher(model, EmbedBatching(max_texts=4, max_wait_ms=0))
    texts = ["x" * n for n in range(1, 11)]
    assert await batcher.embed(texts) == [[float(n)] for n in range(1, 11)]
    await batcher.aclose()
    assert [len(call) for call in model.calls] == [4, 4, 2]


async def test_the_token_budget_closes_a_batch() -> None:
    model = FakeModel()
    batcher = DynamicBatcher(model, EmbedBatching(max_texts=64, max_tokens=30, max_wait_ms=20))
    long_text = "word " * 20  # about 26 estimated tokens
    await asyncio.gather(batcher.embed([long_text]), batcher.embed([long_text]))
    await batcher.aclose()
    assert [len(call) for call in model.calls] == [1, 1]


async def test_a_model_error_reaches_every_caller_of_the_batch() -> None:
    batcher = DynamicBatcher(FakeModel(fail=True), EmbedBatching(max_wait_ms=20))
    results = await asyncio.gather(
        batcher.embed(["a"]), batcher.embed(["b"]), return_exceptions=True
    )
    await batcher.aclose()
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_a_cancelled_caller_does_not_break_the_others() -> None:
    model = FakeModel()
    batcher = DynamicBatcher(model, EmbedBatching(max_wait_ms=50))
    doomed = asyncio.create_task(batcher.embed(["gone"]))
    kept = asyncio.create_task(batcher.embed(["kept"]))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await kept == [[4.0]]
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await batcher.aclose()
