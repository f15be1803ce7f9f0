"""Dynamic batching: texts from concurrent embed requests share model calls.

A batch closes when it holds ``max_texts`` texts or ``max_tokens`` estimated tokens, or
``max_wait_ms`` after its first text arrived. Under load the wait never matters: while the
model runs one batch the next one fills up.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable

from providers.tokens import estimate_tokens
from workers.settings import EmbedBatching

EmbedFn = Callable[[list[str]], Awaitable[list[list[float]]]]


class _Item:
    __slots__ = ("future", "texts", "tokens")

    def __init__(self, texts: list[str], future: asyncio.Future[list[list[float]]]) -> None:
        self.texts = texts
        self.future = future
        self.tokens = sum(estimate_tokens(t) for t in texts)


class DynamicBatcher:
    def __init__(
        self,
        embed: EmbedFn,
        limits: EmbedBatching,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self._embed = embed
        self._limits = limits
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._carry: _Item | None = None
        self._task: asyncio.Task[None] | None = None

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """Vectors for ``texts``, in order, computed in shared batches."""
        if self._task is None:
            # A fresh context: batches serve many requests, none of them is the parent.
            self._task = asyncio.create_task(
                self._run(), name="embed-batcher", context=contextvars.Context()
            )
        loop = asyncio.get_running_loop()
        step = self._limits.max_texts
        items = [
            _Item(texts[i : i + step], loop.create_future()) for i in range(0, len(texts), step)
        ]
        for item in items:
            self._queue.put_nowait(item)
        parts = await asyncio.gather(*(item.future for item in items))
        return [vector for part in parts for vector in part]

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

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

    async def _next_batch(self) -> list[_Item]:
        first = self._carry or await self._queue.get()
        self._carry = None
        batch, count, tokens = [first], len(first.texts), first.tokens
        deadline = asyncio.get_running_loop().time() + self._limits.max_wait_ms / 1000
        while count < self._limits.max_texts:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), timeout=remaining)
                except TimeoutError:
                    break
            if count + len(item.texts) > self._limits.max_texts or (
                tokens + item.tokens > self._limits.max_tokens
            ):
                self._carry = item  # first in the next batch: order is kept
                break
            batch.append(item)
            count += len(item.texts)
            tokens += item.tokens
        return batch
