"""The interface between the job runner and a category's job logic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, TypeVar

from contracts.names import Lane
from contracts.replies import ReplyChunk
from workers.handlers.reply_stream import ChunkStamper

R_contra = TypeVar("R_contra", contravariant=True)


class JobHandler(Protocol[R_contra]):
    """Turns one request of its kind into reply chunks; the last chunk yielded is a Final.

    The runner has already decoded and validated the request for this kind, claimed it in
    the ledger and opened its reply stream: a handler only does the category's work.
    ``lane`` is the lane the job came on: where a handler queues work for a model, the
    interactive lane's goes first (docs/decisions/0021-priority-lanes.md)."""

    kind: str

    def handle(
        self, request: R_contra, stamper: ChunkStamper, *, lane: Lane = "interactive"
    ) -> AsyncIterator[ReplyChunk]: ...

    async def health(self) -> dict[str, bool]:
        """Each provider's health, by name (behind the worker's /readyz)."""
        ...

    async def aclose(self) -> None: ...
