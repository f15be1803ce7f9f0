"""Dynamic batching: texts from concurrent embed requests share model calls, the interactive
lane's ahead of the batch lane's.

A batch closes when it holds ``max_texts`` texts or ``max_tokens`` estimated tokens, or
``max_wait_ms`` after its first text arrived. Under load the wait never matters: while the
model runs one batch the next one fills up.

Lanes (docs/decisions/0021-priority-lanes.md): a model call cannot be interrupted, so the
most an interactive text waits is the call already running. A call takes interactive texts
whenever there are any, and batch texts only when there are none; while the interactive
lane is busy (a text within ``interactive_busy_ms``) a batch call holds at most
``batch_lane_max_texts``, so that the call an interactive text waits for is a short one.
With the interactive lane quiet, batch calls are full-sized again.

Vectors stay in the form the model call gave them (a local model's float32 array, sliced
into views for its callers; lists where the call made lists): the batcher copies none.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import numpy as np

from contracts.names import LANES, Lane
from contracts.tokens import estimate_tokens
from providers.embeddings.base import FloatRows
from workers.settings import EmbedBatching

# One vector per text, in order: what a model call returns and what each caller gets.
Rows = TypeVar("Rows", FloatRows, list[list[float]])


def _joined(parts: list[Rows]) -> Rows:
    """The rows of a request that was split into pieces, in one piece again."""
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], list):
        return [row for part in parts for row in part]
    return np.concatenate(parts)


class _Item(Generic[Rows]):
    __slots__ = ("future", "texts", "tokens")

    def __init__(self, texts: list[str], future: asyncio.Future[Rows]) -> None:
        self.texts = texts
        self.future: asyncio.Future[Rows] = future
        self.tokens = sum(estimate_tokens(t) for t in texts)


class DynamicBatcher(Generic[Rows]):
    def __init__(
        self,
        embed: Callable[[list[str]], Awaitable[Rows]],
        limits: EmbedBatching,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self._embed: Callable[[list[str]], Awaitable[Rows]] = embed
        self._limits = limits
        self._on_batch = on_batch
        self._waiting: dict[Lane, deque[_Item[Rows]]] = {lane: deque() for lane in LANES}
        self._arrived = asyncio.Event()
        self._interactive_seen = float("-inf")  # loop time of the last interactive text
        self._task: asyncio.Task[None] | None = None

    async def embed(self, texts: list[str], *, lane: Lane = "interactive") -> Rows:
        """Vectors for ``texts``, in order, computed in shared batches."""
        if self._task is None:
            # A fresh context: batches serve many requests, none of them is the parent.
            self._task = asyncio.create_task(
                self._run(), name="embed-batcher", context=contextvars.Context()
            )
        loop = asyncio.get_running_loop()
        # Batch texts queue in pieces a short call can take (calls join pieces again).
        step = self._limits.max_texts if lane == "interactive" else self._batch_step()
        items = [
            _Item(texts[i : i + step], loop.create_future()) for i in range(0, len(texts), step)
        ]
        if lane == "interactive":
            self._interactive_seen = loop.time()
        self._waiting[lane].extend(items)
        self._arrived.set()
        parts = await asyncio.gather(*(item.future for item in items))
        return _joined(list(parts))

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _batch_step(self) -> int:
        return min(self._limits.batch_lane_max_texts, self._limits.max_texts)

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            live = [item for item in batch if not item.future.done()]  # skip cancelled callers
            if not live:
                continue
            texts = [text for item in live for text in item.texts]
            self._on_batch(len(texts))
            try:
                vectors = await self._embed(texts)
            except asyncio.CancelledError:
                for item in live:
                    item.future.cancel()
                raise
            except Exception as exc:  # the callers get the model's error
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            start = 0
            for item in live:
                end = start + len(item.texts)
                if not item.future.done():
                    item.future.set_result(vectors[start:end])
                start = end

    async def _next_batch(self) -> list[_Item[Rows]]:
        """The next call's items: of one lane, interactive when it has any, taken in order
        until the call is full or ``max_wait_ms`` after the first one."""
        while not any(self._waiting.values()):
            self._arrived.clear()
            await self._arrived.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._limits.max_wait_ms / 1000
        batch: list[_Item[Rows]] = []
        lane: Lane = "interactive"
        while True:
            if batch and lane == "batch" and self._waiting["interactive"]:
                # An interactive text came while a batch call was gathering: it goes first.
                self._waiting["batch"].extendleft(reversed(batch))
                batch = []
            if not batch:
                lane = "interactive" if self._waiting["interactive"] else "batch"
            full = self._take(lane, batch)
            remaining = deadline - loop.time()
            if full or remaining <= 0:
                return batch
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout=remaining)
            except TimeoutError:
                return batch

    def _take(self, lane: Lane, batch: list[_Item[Rows]]) -> bool:
        """Move ``lane``'s waiting items into ``batch`` while they fit (the first always
        does); True when the call is full."""
        waiting = self._waiting[lane]
        max_texts = self._limits.max_texts
        if lane == "batch" and self._interactive_busy():
            max_texts = self._batch_step()
        count = sum(len(item.texts) for item in batch)
        tokens = sum(item.tokens for item in batch)
        while waiting:
            item = waiting[0]
            if batch and (
                count + len(item.texts) > max_texts
                or tokens + item.tokens > self._limits.max_tokens
            ):
                return True  # stays first of its lane: order is kept
            batch.append(waiting.popleft())
            count += len(item.texts)
            tokens += item.tokens
        return count >= max_texts

    def _interactive_busy(self) -> bool:
        busy_s = self._limits.interactive_busy_ms / 1000
        return asyncio.get_running_loop().time() - self._interactive_seen < busy_s
