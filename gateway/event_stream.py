"""An SSE response that stops its producer when the client disconnects: the producer's
generator is closed, and with it the FleetClient stream it reads, which cancels the job."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.disconnect import ClientGone, unless_disconnected


class EventStream(Response):
    def __init__(self, events: AsyncGenerator[bytes, None]) -> None:
        # Not Response.__init__: it would give the body a content-length of 0.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
        ]
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
        await send(start)
        with contextlib.suppress(ClientGone):
            await unless_disconnected(receive, self._send_all(send))

    async def _send_all(self, send: Send) -> None:
        async with contextlib.aclosing(self._events):
            async for data in self._events:
                await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
