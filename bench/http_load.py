"""A load generator cheap enough not to be what it measures: raw HTTP/1.1 over asyncio streams,
one kept-alive connection per caller, the request's bytes made once. httpx spent 6 ms of CPU a
request in bench/gateway_overhead.py's first version, four times the gateway's own; this
spends tens of microseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


class HttpCaller:
    """One connection that sends the same POST again and again and reads each answer whole;
    opened again when the server has closed it while idle (uvicorn does after 5 s)."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.head = b""  # the last answer's status line and headers, as sent

    def header(self, name: bytes) -> bytes | None:
        """The last answer's header ``name`` (lower case), if it had one."""
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.lower() == name:
                return value.strip()
        return None

    async def call(self, request: bytes) -> bytes:
        """The answer's body; RuntimeError when its status is not 200."""
        if self._stream is not None and not self._stream[0].at_eof():
            try:
                return await self._exchange(*self._stream, request)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise  # closed in the middle of an answer: not an idle close
        await self.aclose()
        self._stream = await asyncio.open_connection("127.0.0.1", self._port)
        return await self._exchange(*self._stream, request)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> bytes:
        writer.write(request)
        self.head = head = await reader.readuntil(b"\r\n\r\n")
        status = head[9:12]
        headers = head.lower()
        if b"\r\ncontent-length:" in headers:
            length = int(headers.split(b"\r\ncontent-length:", 1)[1].split(b"\r\n", 1)[0])
            body = await reader.readexactly(length)
        else:  # chunked
            body = await _chunks(reader)
        if status != b"200":
            raise RuntimeError(f"HTTP {status.decode()}: {body[:500]!r}")
        return body

    async def aclose(self) -> None:
        if self._stream is not None:
            writer = self._stream[1]
            self._stream = None
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _chunks(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while size := int((await reader.readuntil(b"\r\n"))[:-2], 16):
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
    await reader.readexactly(2)
    return b"".join(parts)


def post(path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    """The bytes of one POST of ``body`` as JSON."""
    payload = json.dumps(body).encode()
    lines = [
        f"POST {path} HTTP/1.1",
        "host: 127.0.0.1",
        "content-type: application/json",
        f"content-length: {len(payload)}",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


@asynccontextmanager
async def callers(port: int, count: int) -> AsyncIterator[list[HttpCaller]]:
    """``count`` connections to 127.0.0.1:``port``, each opened on its first call."""
    opened = [HttpCaller(port) for _ in range(count)]
    try:
        yield opened
    finally:
        for caller in opened:
            await caller.aclose()


async def burst(opened: list[HttpCaller], request: bytes, calls: int) -> float:
    """Seconds for ``calls`` calls, every connection of ``opened`` calling in turn."""
    remaining = calls

    async def run(caller: HttpCaller) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await caller.call(request)

    started = time.perf_counter()
    await asyncio.gather(*map(run, opened))
    return time.perf_counter() - started
