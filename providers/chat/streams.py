"""Closing a provider's event stream when its reader stops early."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType

from providers.chat.base import ChatEvent


class closing:
    """Close a provider's stream when we stop early (the protocol promises an iterator;
    every real one is an async generator with aclose). A class, not an
    ``asynccontextmanager``: it wraps every chat call, and a generator-based one costs a
    few microseconds more a call."""

    __slots__ = ("_stream",)

    def __init__(self, stream: AsyncIterator[ChatEvent]) -> None:
        self._stream = stream

    async def __aenter__(self) -> AsyncIterator[ChatEvent]:
        return self._stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()
