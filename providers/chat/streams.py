"""Closing a provider's event stream when its reader stops early."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

from providers.chat.base import ChatEvent


@asynccontextmanager
async def closing(
    stream: AsyncIterator[ChatEvent],
) -> AsyncGenerator[AsyncIterator[ChatEvent], None]:
    """Close a provider's stream when we stop early (the protocol promises an iterator;
    every real one is an async generator with aclose)."""
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
