"""The embed worker's dynamic batcher: shared calls, order kept, limits held, errors shared."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from contracts.names import Lane
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


class GatedModel:
    """Records each call's texts and holds it until the test lets it finish."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self._permits = asyncio.Semaphore(0)
        self._called = asyncio.Condition()

    async def __call__(self, texts: list[str]) -> list[list[float]]:
        async with self._called:
            self.calls.append(list(texts))
            self._called.notify_all()
        await self._permits.acquire()
        return [[float(len(t))] for t in texts]

    async def started(self, calls: int) -> None:
        """Wait until ``calls`` calls have begun."""
        async with self._called:
            await asyncio.wait_for(self._called.wait_for(lambda: len(self.calls) >= calls), 1)

    def finish(self, calls: int = 1) -> None:
        for _ in range(calls):
            self._permits.release()


async def test_interactive_texts_go_ahead_of_batch_texts_queued_before_them() -> None:
    model = GatedModel()
    limits = EmbedBatching(max_texts=8, max_wait_ms=0, batch_lane_max_texts=8)
    batcher = DynamicBatcher(model, limits)
    batch = [asyncio.create_task(batcher.embed([f"b{i}"] * 8, lane="batch")) for i in range(3)]
    await model.started(1)  # the first batch call runs; two more wait
    user = asyncio.create_task(batcher.embed(["hello"]))
    await asyncio.sleep(0.01)
    model.finish()
    await model.started(2)
    assert model.calls[1] == ["hello"]  # next: ahead of the batch texts that came before
    model.finish(3)
    assert await user == [[5.0]]
    await asyncio.gather(*batch)
    await batcher.aclose()
    assert [call[0] for call in model.calls] == ["b0", "hello", "b1", "b2"]


async def test_a_call_never_mixes_the_lanes() -> None:
    model = FakeModel()
    batcher = DynamicBatcher(model, EmbedBatching(max_texts=64, max_wait_ms=20))
    await asyncio.gather(
        batcher.embed(["user one"]),
        batcher.embed(["batch one", "batch two"], lane="batch"),
        batcher.embed(["user two"]),
    )
    await batcher.aclose()
    assert model.calls == [["user one", "user two"], ["batch one", "batch two"]]


async def test_batch_calls_are_short_while_users_are_about_and_full_when_they_are_not() -> None:
    model = FakeModel()
    quiet = DynamicBatcher(model, EmbedBatching(max_texts=8, max_wait_ms=0, batch_lane_max_texts=2))
    await quiet.embed([f"t{i}" for i in range(8)], lane="batch")
    await quiet.aclose()
    assert [len(call) for call in model.calls] == [8]  # no interactive text: one full call

    model.calls.clear()
    busy = DynamicBatcher(
        model,
        EmbedBatching(
            max_texts=8, max_wait_ms=0, batch_lane_max_texts=2, interactive_busy_ms=60_000
        ),
    )
    await busy.embed(["user"])
    await busy.embed([f"t{i}" for i in range(8)], lane="batch")
    await busy.aclose()
    assert [len(call) for call in model.calls] == [1, 2, 2, 2, 2]


class SeesGathering(DynamicBatcher[list[list[float]]]):
    """Sets ``batch_gathering`` once a batch-lane call has taken a text and waits for more."""

    def __init__(self, embed: FakeModel, limits: EmbedBatching) -> None:
        super().__init__(embed, limits)
        self.batch_gathering = asyncio.Event()

    def _take(self, lane: Lane, batch: list[Any]) -> bool:
        full = super()._take(lane, batch)
        if lane == "batch" and batch and not full:
            self.batch_gathering.set()
        return full


async def test_an_interactive_text_arriving_while_a_batch_call_gathers_goes_first() -> None:
    model = FakeModel()
    # A window no run outlasts: each call closes because it is full (two texts), so the
    # batch call is still gathering when the interactive texts come, however slow the loop.
    batcher = SeesGathering(model, EmbedBatching(max_texts=2, max_wait_ms=600_000))
    batch = asyncio.create_task(batcher.embed(["b1"], lane="batch"))
    await asyncio.wait_for(batcher.batch_gathering.wait(), 1)
    # Were the interactive texts to wait for the batch call, they would wait the window.
    await asyncio.wait_for(batcher.embed(["user", "again"]), 5)
    await batcher.embed(["b2"], lane="batch")  # fills the batch call b1 went back to
    await batch
    await batcher.aclose()
    assert model.calls == [["user", "again"], ["b1", "b2"]]


async def test_array_rows_come_back_as_views_of_the_call_and_split_requests_joined() -> None:
    calls: list[npt.NDArray[np.float32]] = []

    async def model(texts: list[str]) -> npt.NDArray[np.float32]:
        rows = np.array([[float(len(t)), 1.0] for t in texts], dtype=np.float32)
        calls.append(rows)
        return rows

    batcher = DynamicBatcher(model, EmbedBatching(max_texts=4, max_wait_ms=20))
    small, large = await asyncio.gather(
        batcher.embed(["a", "bb"]), batcher.embed(["x" * n for n in range(1, 7)])
    )
    await batcher.aclose()
    assert small.dtype == np.float32
    assert small[:, 0].tolist() == [1.0, 2.0]
    assert np.shares_memory(small, calls[0])  # a view of the model's array, not a copy
    assert large[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # two calls, one result
