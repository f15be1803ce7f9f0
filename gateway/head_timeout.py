"""A deadline on each request's head. uvicorn has none: its keep-alive timer runs only
between requests and stops at the next request's first byte, and a new connection has no
timer at all, so a client that sends its headers a byte at a time (slowloris), or never
finishes them, holds its connection for as long as it likes. The deadline starts when the
connection opens or, on a kept-alive one, at the next head's first byte, and is met once
the parser has the whole head. Past it a client that sent part of a head is answered 408 in
OpenAI's shape; one that sent nothing is closed, as the keep-alive timer closes it.

The same protocol writes through ``OneWrite`` (gateway/one_write.py): a response's head and
body go out in one system call."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.errors import OpenAIError
from gateway.one_write import OneWrite


def head_timed(timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol (llhttp, in C: cheaper a call than h11 in pure Python,
    bench/NOTES.md), with a deadline of ``timeout_s`` on each
    request's head (``uvicorn.Config(http=...)``; the class carries the deadline, as uvicorn
    builds one protocol per connection from the class alone), writing once a turn of the
    loop (gateway/one_write.py)."""
    refusal = _timed_out(timeout_s)

    class HeadTimed(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_timer: asyncio.TimerHandle | None = None
            self._head_begun = False  # a head's first byte came, its end did not yet

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(OneWrite(transport, self.loop))
            self._start_timer()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._head_begun:
                # A kept-alive connection's next head, begun and not complete: timed from
                # the bytes that began it (between requests the connection is the
                # keep-alive timer's). A head that came whole in them needs no timer.
                self._start_timer()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_begun = True

        def on_headers_complete(self) -> None:
            self._head_begun = False
            self._stop_timer()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_timer()
            super().connection_lost(exc)

        def _start_timer(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(timeout_s, self._head_timed_out)

        def _stop_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.transport.is_closing():
                return
            if self._head_begun:  # part of a head: say why the connection ends
                self.transport.write(refusal)
            self.transport.close()

    return HeadTimed


def _timed_out(timeout_s: float) -> bytes:
    """The whole 408 response, written as bytes: the protocol sends a response only to a
    request it has, and this one never arrived."""
    body = OpenAIError(
        408,
        f"the request's headers were not complete within {timeout_s:g} s",
        code="request_timeout",
    ).body()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body
