"""Runs a blocking generator (a model decoding step by step) in its own thread and yields
its items to the event loop as soon as each exists."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import TypeVar, cast

T = TypeVar("T")
_END = object()


async def iterate_in_thread(
    produce: Callable[[threading.Event], Iterator[T]], name: str
) -> AsyncGenerator[T, None]:
    """Yield what ``produce(stop)`` yields, computed in a thread.

    On cancellation or an early exit, ``stop`` is set and this waits for the thread to end,
    so a caller holding a model lock never lets the next call share the model with it.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    stop = threading.Event()

    def put(item: object) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def run() -> None:
        try:
            for item in produce(stop):
                put(item)
        except BaseException as exc:  # forwarded to the event loop, re-raised there
            put(exc)
        finally:
            put(_END)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield cast(T, item)
    finally:
        stop.set()
        await asyncio.to_thread(thread.join)
