"""unless_disconnected: the work runs in the handler's own task, and only the client's
leaving becomes ClientGone. ``receive`` is an ASGI server's, fed by the test."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message

from gateway.disconnect import ClientGone, unless_disconnected


def _server() -> asyncio.Queue[Message]:
    """What the server gives ``receive`` next (the body is read already)."""
    return asyncio.Queue()


async def test_the_work_answers_in_the_callers_task_and_leaves_nothing_behind() -> None:
    messages = _server()
    caller = asyncio.current_task()

    async def work() -> asyncio.Task[object] | None:
        await asyncio.sleep(0)
        return asyncio.current_task()

    assert await unless_disconnected(messages.get, work()) is caller
    await asyncio.sleep(0)  # the watcher's cancel lands
    assert caller is not None
    assert caller.cancelling() == 0
    assert [t for t in asyncio.all_tasks() if t is not caller] == []


async def test_a_client_that_leaves_cancels_the_work_before_client_gone() -> None:
    messages = _server()
    started, cleaned = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # a job that would never answer
        finally:
            await asyncio.sleep(0)  # the cancel on the control topic, awaited
            cleaned.set()

    leaving = asyncio.ensure_future(unless_disconnected(messages.get, work()))
    await started.wait()
    await messages.put({"type": "http.disconnect"})
    with pytest.raises(ClientGone):
        await leaving
    assert cleaned.is_set()
    assert leaving.cancelling() == 0  # the watcher's cancel was taken back


async def test_a_cancel_from_outside_stays_a_cancel() -> None:
    messages = _server()
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.Event().wait()

    waiting = asyncio.ensure_future(unless_disconnected(messages.get, work()))
    await started.wait()
    waiting.cancel()  # a server shutting down, say: not the client leaving
    with pytest.raises(asyncio.CancelledError):
        await waiting
