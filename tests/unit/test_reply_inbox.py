"""The SDK's per-request inbox: order, duplicates, restarts."""

from __future__ import annotations

from contracts import GenerateResult, TextDelta
from producer_sdk import StreamRestarted
from producer_sdk.replies import ReplyInbox


def _delta(seq: int, text: str, attempt: int = 0) -> TextDelta:
    return TextDelta(request_id="r", attempt=attempt, seq=seq, text=text)


async def _drain(inbox: ReplyInbox, count: int) -> list[object]:
    return [await inbox.get() for _ in range(count)]


async def test_duplicates_are_dropped() -> None:
    inbox = ReplyInbox("r")
    for chunk in (_delta(0, "a"), _delta(0, "a"), _delta(1, "b"), _delta(1, "b")):
        inbox.accept(chunk)
    assert await _drain(inbox, 2) == [_delta(0, "a"), _delta(1, "b")]
    assert inbox._queue.empty()


async def test_a_new_attempt_restarts_and_old_chunks_are_ignored() -> None:
    inbox = ReplyInbox("r")
    inbox.accept(_delta(0, "old"))
    inbox.accept(_delta(0, "new", attempt=1))
    inbox.accept(_delta(1, "stale", attempt=0))
    final = GenerateResult(request_id="r", attempt=1, seq=1, text="new", model="m")
    inbox.accept(final)
    assert await _drain(inbox, 4) == [
        _delta(0, "old"),
        StreamRestarted(request_id="r", attempt=1),
        _delta(0, "new", attempt=1),
        final,
    ]
