"""A streamed HTTP answer whose job restarts: the client gets the new attempt's text only
past what it already has, or an error event once the redo departs from it."""

from __future__ import annotations

import pytest

from contracts.replies import TextDelta, ToolCallDelta
from gateway.restarts import Diverged, SentText


def _delta(text: str, attempt: int = 0) -> TextDelta:
    return TextDelta(request_id="r", attempt=attempt, seq=0, text=text)


def _texts(sent: SentText, *pieces: str) -> list[str | None]:
    out = []
    for piece in pieces:
        new = sent.to_send(_delta(piece, attempt=1))
        out.append(new.text if isinstance(new, TextDelta) else None)
    return out


def test_a_redo_that_repeats_the_sent_text_continues_past_it() -> None:
    sent = SentText()
    assert _texts(sent, "The cat ", "sat") == ["The cat ", "sat"]
    sent.restarted()
    # A replay sends the whole text as one delta: only the rest reaches the client.
    assert _texts(sent, "The ", "cat sat on", " the mat.") == [None, " on", " the mat."]
    sent.check_final("The cat sat on the mat.")


def test_a_redo_that_departs_from_the_sent_text_ends_the_stream() -> None:
    sent = SentText()
    _texts(sent, "The cat sat")
    sent.restarted()
    with pytest.raises(Diverged):
        _texts(sent, "A dog")


def test_a_redo_shorter_than_the_sent_text_cannot_end_the_stream_as_if_whole() -> None:
    sent = SentText()
    _texts(sent, "The cat sat")
    sent.restarted()
    assert _texts(sent, "The cat") == [None]
    with pytest.raises(Diverged):
        sent.check_final("The cat")


def test_a_restart_before_anything_was_sent_is_no_restart_to_the_client() -> None:
    sent = SentText()
    sent.restarted()
    assert _texts(sent, "Hello") == ["Hello"]


def test_tool_calls_already_sent_cannot_be_repeated() -> None:
    sent = SentText()
    call = ToolCallDelta(request_id="r", attempt=0, seq=0, index=0, id="c1", name="f")
    assert sent.to_send(call) is call
    with pytest.raises(Diverged):
        sent.restarted()
