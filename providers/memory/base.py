"""What a conversation memory store is."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from contracts.generate import ChatMessage


@runtime_checkable
class MemoryStore(Protocol):
    name: str

    async def history(self, tenant: str, session_id: str) -> list[ChatMessage]:
        """The stored turns of one session, oldest first."""
        ...

    async def append(
        self,
        tenant: str,
        session_id: str,
        messages: list[ChatMessage],
        *,
        turn_id: str | None = None,
    ) -> None:
        """Add turns to a session, keeping only the configured window. Appending again with
        the same ``turn_id`` replaces what was appended under it: a job that ran twice (its
        worker died after saving) leaves only its last answer, once."""
        ...

    async def clear(self, tenant: str, session_id: str) -> None: ...

    async def aclose(self) -> None: ...
