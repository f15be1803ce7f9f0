"""OneWrite over a real loopback connection: the writes of one turn reach the socket as one
write, in order; closing sends what is held, aborting drops it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.one_write import OneWrite


@asynccontextmanager
async def connection() -> AsyncIterator[tuple[OneWrite, list[bytes], asyncio.StreamReader]]:
    """A client transport wrapped in OneWrite, the writes its real transport was handed, and
    the server side's reader."""
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put((reader, writer))

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    handed: list[bytes] = []
    real_write = transport.write

    def write(data: bytes | bytearray | memoryview) -> None:
        handed.append(bytes(data))
        real_write(data)

    transport.write = write  # type: ignore[method-assign]
    reader, writer = await accepted.get()
    try:
        yield OneWrite(transport, loop), handed, reader
    finally:
        transport.abort()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        server.close()
        await server.wait_closed()


async def test_the_writes_of_one_turn_go_out_as_one() -> None:
    async with connection() as (one, handed, reader):
        one.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
        one.write(b"pong")
        assert handed == []  # held until the next turn
        assert one.get_write_buffer_size() == 42
        assert await reader.readexactly(42) == b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\npong"
        assert handed == [b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\npong"]
        one.write(b"next")
        assert await reader.readexactly(4) == b"next"
        assert len(handed) == 2


async def test_close_sends_what_is_held_and_abort_drops_it() -> None:
    async with connection() as (one, handed, reader):
        one.write(b"408 ")
        one.write(b"then close")
        one.close()
        assert handed == [b"408 then close"]  # at once, not a turn later
        assert await reader.read() == b"408 then close"
    async with connection() as (one, handed, reader):
        one.write(b"never sent")
        one.abort()
        assert await reader.read() == b""
        assert handed == []
