"""What every conversation memory store must do, asserted the same way for each.

A subclass provides ``store``: an empty store (its own key space) with a window of at least
ten messages.
"""

from __future__ import annotations

import pytest

from contracts.generate import ChatMessage
from providers.memory import MemoryStore


def turn(i: int) -> list[ChatMessage]:
    return [
        ChatMessage(role="user", content=f"question {i}"),
        ChatMessage(role="assistant", content=f"answer {i}"),
    ]


class MemoryStoreConformance:
    @pytest.fixture
    def store(self) -> MemoryStore:
        raise NotImplementedError("a conformance subclass provides `store`")

    def test_satisfies_the_protocol(self, store: MemoryStore) -> None:
        assert isinstance(store, MemoryStore)

    async def test_a_new_session_has_no_history(self, store: MemoryStore) -> None:
        assert await store.history("tenant", "new-session") == []

    async def test_history_is_what_was_appended_oldest_first(self, store: MemoryStore) -> None:
        await store.append("tenant", "s", turn(1))
        await store.append("tenant", "s", turn(2))
        assert await store.history("tenant", "s") == [*turn(1), *turn(2)]

    async def test_tenants_and_sessions_never_see_each_other(self, store: MemoryStore) -> None:
        await store.append("acme", "s", turn(1))
        assert await store.history("globex", "s") == []
        assert await store.history("acme", "other") == []

    async def test_a_turn_appended_again_replaces_itself(self, store: MemoryStore) -> None:
        await store.append("tenant", "s", turn(1), turn_id="request-1")
        first_run = [
            ChatMessage(role="user", content="q"),
            ChatMessage(role="assistant", content="a"),
        ]
        await store.append("tenant", "s", first_run, turn_id="request-2")
        rerun = [ChatMessage(role="user", content="q"), ChatMessage(role="assistant", content="b")]
        await store.append("tenant", "s", rerun, turn_id="request-2")  # the job ran again
        assert await store.history("tenant", "s") == [*turn(1), *rerun]
