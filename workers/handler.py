"""The interface between the consume loop and a category's job logic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from contracts.codec import AnyRequest
from contracts.replies import ReplyChunk
from workers.replies import ChunkStamper


class JobHandler(Protocol):
    """Turns one request into reply chunks; the last chunk yielded is a Final."""

    kind: str

    def handle(self, request: AnyRequest, stamper: ChunkStamper) -> AsyncIterator[ReplyChunk]: ...

    async def aclose(self) -> None: ...
