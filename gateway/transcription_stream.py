"""``POST /v1/audio/transcriptions`` with ``stream=true``: OpenAI's transcript events as the
transcribe job streams its segments, ``transcript.text.delta`` for each piece of text, then
``transcript.text.done`` with the whole text, then ``data: [DONE]``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from contracts.replies import TextDelta, TranscribeResult, TranscriptSegment
from gateway.chat_chunks import DONE, sse_event
from gateway.errors import FLEET_FAILURES, fleet_error, from_fleet
from gateway.event_stream import EventStream
from gateway.overhead import awaiting_fleet
from gateway.restarts import Diverged, SentText, restart_error
from gateway.transcriptions import TranscriptionCall
from producer_sdk import FleetClient, StreamRestarted
from producer_sdk.options import TranscribeEvent

# The fleet's transcribers join their segments' texts with a space into the transcript's text
# (providers/transcription/), so a segment after the first is sent after one.
_SEPARATOR: Final = " "


class _Delta(msgspec.Struct, frozen=True, tag_field="type", tag="transcript.text.delta"):
    delta: str


class _Done(msgspec.Struct, frozen=True, tag_field="type", tag="transcript.text.done"):
    # No usage: OpenAI's done event counts tokens, and the fleet's transcript has none (the
    # json answer's usage is seconds of audio, a shape this event does not take).
    text: str


_encoder = msgspec.json.Encoder()


async def stream(
    request: Request, client: FleetClient, call: TranscriptionCall, request_id: str
) -> Response:
    """The first event is awaited before the response starts, so a job refused at once (a
    language the model does not know, audio that cannot be decoded) is answered with its
    HTTP status, not a 200 that carries an error."""
    events = client.stream_transcribe(
        call.audio, model=call.model, language=call.language, request_id=request_id
    )
    first = await from_fleet(awaiting_fleet(request, anext(events)))
    return EventStream(transcript_events(first, events))


async def transcript_events(
    first: TranscribeEvent, events: AsyncGenerator[TranscribeEvent, None]
) -> AsyncGenerator[bytes, None]:
    """The SSE events of ``first`` and the rest of ``events``. Closing this generator (the
    client left: gateway/event_stream.py) closes ``events``, which cancels the job. A job
    that fails, or is redone and departs from the text sent, ends it with an error event."""
    sent = SentText()
    begun = False  # whether this attempt's text has begun: its next segment follows a space
    async with contextlib.aclosing(events):
        try:
            item = first
            while True:
                if isinstance(item, TranscribeResult):
                    yield _closing(sent, item.text)
                    return
                if isinstance(item, StreamRestarted):
                    sent.restarted()
                    begun = False
                elif isinstance(item, TranscriptSegment) and item.text:
                    piece = _SEPARATOR + item.text if begun else item.text
                    begun = True
                    if (new := sent.to_send(_as_delta(item, piece))) is not None:
                        assert isinstance(new, TextDelta)  # text in, text out
                        yield _event(_Delta(new.text))
                item = await anext(events)
        except FLEET_FAILURES as exc:
            yield sse_event(fleet_error(exc).body())
        except Diverged as exc:
            yield sse_event(restart_error(exc).body())


def _closing(sent: SentText, text: str) -> bytes:
    """The text the segments did not bring (all of it for a stored answer replayed, which
    has no segments), then the done event and ``[DONE]``. The done event's text is the
    transcript's even where it does not extend the deltas (a provider whose text is not its
    segments joined by spaces): it is the whole text OpenAI's event promises."""
    sent.check_final(text)
    rest = text[len(sent.text) :] if text.startswith(sent.text) else ""
    head = _event(_Delta(rest)) if rest else b""
    return head + _event(_Done(text)) + DONE


def _as_delta(segment: TranscriptSegment, text: str) -> TextDelta:
    return TextDelta(
        request_id=segment.request_id, attempt=segment.attempt, seq=segment.seq, text=text
    )


def _event(event: _Delta | _Done) -> bytes:
    return sse_event(_encoder.encode(event))
