"""A streamed transcription's events without a server, from the reply events a transcribe
job sends: the deltas add up to the done event's text; a job redone after its worker died
goes on past what the client has, or ends in an error event; so does a job that fails
mid-stream; and closing the events closes the job's stream, which is what cancels it."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

from contracts.errors import ErrorCode
from contracts.replies import ErrorReply, TranscribeResult, TranscriptSegment
from gateway.transcription_stream import transcript_events
from producer_sdk import FleetRequestError, StreamRestarted
from producer_sdk.options import TranscribeEvent


def _segment(text: str, attempt: int = 0) -> TranscriptSegment:
    return TranscriptSegment(request_id="r", attempt=attempt, seq=0, start_s=0, end_s=1, text=text)


def _result(text: str) -> TranscribeResult:
    return TranscribeResult(request_id="r", seq=9, model="whisper-tiny.en", text=text)


async def _replies(*events: TranscribeEvent | Exception) -> AsyncGenerator[TranscribeEvent, None]:
    for event in events:
        if isinstance(event, Exception):
            raise event
        yield event


async def _sse(*events: TranscribeEvent | Exception) -> list[Any]:
    """The answer's events, ``[DONE]`` as the string it is sent as."""
    replies = _replies(*events)
    first = await anext(replies)
    assert not isinstance(first, Exception)
    sent = b"".join([data async for data in transcript_events(first, replies)])
    assert sent.endswith(b"\n\n")
    lines = [line.removeprefix(b"data: ") for line in sent.split(b"\n\n")[:-1]]
    return [line.decode() if line == b"[DONE]" else json.loads(line) for line in lines]


def _deltas(events: list[Any]) -> list[str]:
    return [e["delta"] for e in events if isinstance(e, dict) and "delta" in e]


async def test_the_segments_are_deltas_that_join_into_the_done_text() -> None:
    events = await _sse(
        _segment("Kafka carries"),
        _segment(""),
        _segment("the jobs."),
        _result("Kafka carries the jobs."),
    )
    assert events == [
        {"type": "transcript.text.delta", "delta": "Kafka carries"},
        {"type": "transcript.text.delta", "delta": " the jobs."},
        {"type": "transcript.text.done", "text": "Kafka carries the jobs."},
        "[DONE]",
    ]


async def test_a_stored_answer_replayed_without_segments_is_one_delta() -> None:
    events = await _sse(
        StreamRestarted(request_id="r", attempt=1), _result("Kafka carries the jobs.")
    )
    assert _deltas(events) == ["Kafka carries the jobs."]
    assert events[-2:] == [
        {"type": "transcript.text.done", "text": "Kafka carries the jobs."},
        "[DONE]",
    ]


async def test_a_redone_job_goes_on_past_the_text_the_client_has() -> None:
    events = await _sse(
        _segment("Kafka carries"),
        StreamRestarted(request_id="r", attempt=1),
        _segment("Kafka carries", attempt=1),
        _segment("the jobs.", attempt=1),
        _result("Kafka carries the jobs."),
    )
    assert _deltas(events) == ["Kafka carries", " the jobs."]
    assert events[-1] == "[DONE]"


async def test_a_redone_job_that_departs_from_the_sent_text_ends_in_an_error_event() -> None:
    events = await _sse(
        _segment("Kafka carries"),
        StreamRestarted(request_id="r", attempt=1),
        _segment("Cafe carries", attempt=1),
        _result("Cafe carries the jobs."),
    )
    assert _deltas(events) == ["Kafka carries"]
    assert events[-1]["error"]["code"] == "stream_restarted"


async def test_a_job_that_fails_mid_stream_ends_in_its_error_event() -> None:
    reply = ErrorReply(request_id="r", seq=1, code=ErrorCode.PROVIDER_DOWN, message="gone")
    events = await _sse(_segment("Kafka carries"), FleetRequestError(reply))
    assert _deltas(events) == ["Kafka carries"]
    assert events[-1]["error"] == {
        "message": "gone",
        "type": "server_error",
        "param": None,
        "code": "provider_down",
    }


async def test_closing_the_events_closes_the_jobs_stream() -> None:
    """What the gateway does when its client leaves (gateway/event_stream.py): the job's
    stream is closed at once, and its ``finally`` sends the cancel."""
    closed = False

    async def replies() -> AsyncGenerator[TranscribeEvent, None]:
        nonlocal closed
        try:
            yield _segment("Kafka carries")
            yield _segment("the jobs.")
        finally:
            closed = True

    job = replies()
    events = transcript_events(await anext(job), job)
    await anext(events)
    assert not closed
    await events.aclose()
    assert closed
