"""Server-sent events, as the streaming chat APIs send them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec


class SSEEvent(msgspec.Struct, frozen=True):
    event: str | None
    data: str


async def iter_sse(lines: AsyncIterator[str]) -> AsyncIterator[SSEEvent]:
    """Server-sent events from text lines (the WHATWG rules the providers rely on:
    ``event:``/``data:`` fields, several data lines joined by newlines, ``:`` comments).
    One exception: an ``error:`` line, which those rules would drop, is an event named
    "error" (llama.cpp server builds before 2025 send a failure in a stream that way)."""
    event: str | None = None
    data: list[str] = []
    async for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield SSEEvent(event, "\n".join(data))
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
        elif field == "error":
            event, data = "error", [value]
    if data:  # a stream that ends without the final blank line
        yield SSEEvent(event, "\n".join(data))
