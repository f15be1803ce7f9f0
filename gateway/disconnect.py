"""Work that stops when the HTTP client goes away: the request's job is cancelled, which
makes FleetClient send the cancel on the control topic (its stream's ``finally``), and the
worker stops the provider call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before the work was done; there is no one to answer."""


async def unless_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """``work``'s result, or ClientGone once ``receive`` says the client has left (the
    request body must have been read already: what ``receive`` gives next is the
    disconnect).

    ``work`` runs in the caller's task and one watcher task waits for the disconnect, which
    cancels the caller's task: one task a request, not two and an ``asyncio.wait``, which
    were a tenth of the gateway's CPU a call (bench/NOTES.md, 2026-12-07). The work's own
    ``finally`` (FleetClient's cancel on the control topic) has run by the time ClientGone
    is raised."""
    caller = asyncio.current_task()
    assert caller is not None  # awaited, so inside a task
    waiting, gone = True, False

    def leave(watcher: asyncio.Task[None]) -> None:
        nonlocal gone
        # The client left (or receive failed: no one to answer) while the work still ran;
        # a callback that comes after the work ended (both in one turn of the loop) is late.
        if waiting and not watcher.cancelled():
            gone = True
            caller.cancel()

    watcher = asyncio.create_task(_disconnect(receive))
    watcher.add_done_callback(leave)
    try:
        result = await work
    except asyncio.CancelledError:
        if gone and caller.uncancel() == 0:  # our cancel, not one from outside
            raise ClientGone from None
        raise
    finally:
        waiting = False
        watcher.cancel()
    if gone:  # the work ended on its own after all: the cancel it swallowed is taken back
        caller.uncancel()
    return result


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
