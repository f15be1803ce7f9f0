"""``POST /v1/audio/speech``: OpenAI's speech call as a fleet speech job, its audio streamed
back as it is made: the raw file (``stream_format: "audio"``, the default) or server-sent
events (``"sse"``: ``speech.audio.delta`` with base64 audio, then ``speech.audio.done``
with the usage)."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Annotated, Final, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contracts.speech import (
    SPEECH_MAX_INPUT_CHARS,
    SPEECH_MAX_SPEED,
    SPEECH_MIN_SPEED,
    SpeechFormat,
)
from contracts.tokens import estimate_tokens
from gateway.admission import admitted
from gateway.chat_chunks import sse_event
from gateway.errors import FLEET_FAILURES, OpenAIError, decoded_body, fleet_error, from_fleet
from gateway.event_stream import EventStream
from gateway.overhead import awaiting_fleet
from gateway.request_ids import request_id
from producer_sdk import FleetClient, SpeechAudio, SpeechEvent, SpeechResult, StreamRestarted

if TYPE_CHECKING:
    from gateway.app import GatewayState

# What OpenAI answers each format as.
_MEDIA_TYPES: Final = {
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
}


class SpeechCall(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    model: str
    input: Annotated[str, msgspec.Meta(min_length=1, max_length=SPEECH_MAX_INPUT_CHARS)]
    voice: Annotated[str, msgspec.Meta(min_length=1)]
    # OpenAI's default; a worker without an mp3 encoder refuses it, naming what it makes.
    response_format: SpeechFormat = "mp3"
    speed: Annotated[float, msgspec.Meta(ge=SPEECH_MIN_SPEED, le=SPEECH_MAX_SPEED)] = 1.0
    instructions: Annotated[str, msgspec.Meta(max_length=SPEECH_MAX_INPUT_CHARS)] | None = None
    stream_format: Literal["audio", "sse"] = "audio"


def route(state: GatewayState) -> Route:
    async def create_speech(request: Request) -> Response:
        tenant = state.tenant(request)
        client = await state.client(tenant)
        call = read_speech_call(await request.body())
        state.models.check(call.model, "speech")
        ticket = await state.admit(tenant, estimate_tokens(call.input))
        return await admitted(ticket, speak(request, client, call, request_id(request.scope)))

    return Route("/v1/audio/speech", create_speech, methods=["POST"])


def read_speech_call(raw: bytes) -> SpeechCall:
    return decoded_body(raw, SpeechCall)


async def speak(
    request: Request, client: FleetClient, call: SpeechCall, request_id: str
) -> Response:
    """The first event is awaited before the response starts, so a job refused at once (a
    voice, a speed, a format the worker does not serve) is answered with its status."""
    events = client.stream_speech(
        call.input,
        model=call.model,
        voice=call.voice,
        response_format=call.response_format,
        speed=call.speed,
        instructions=call.instructions,
        request_id=request_id,
    )
    first = await from_fleet(awaiting_fleet(request, anext(events)))
    if call.stream_format == "sse":
        return EventStream(_events(first, events, _sse))
    return _AudioStream(_events(first, events, _raw), _MEDIA_TYPES[call.response_format])


class _AudioStream(EventStream):
    """The audio file as it is made, stopped (and its job cancelled) when the client goes."""

    def __init__(self, audio: AsyncGenerator[bytes, None], media_type: str) -> None:
        super().__init__(audio)
        self.raw_headers = [(b"content-type", media_type.encode())]


def _raw(event: SpeechAudio | SpeechResult) -> bytes:
    return event.audio if isinstance(event, SpeechAudio) else b""


def _sse(event: SpeechAudio | SpeechResult) -> bytes:
    if isinstance(event, SpeechAudio):
        audio = base64.b64encode(event.audio).decode()
        return sse_event(msgspec.json.encode({"type": "speech.audio.delta", "audio": audio}))
    # The fleet counts characters and seconds, not tokens: said as they are.
    usage = msgspec.to_builtins(event.usage)
    return sse_event(msgspec.json.encode({"type": "speech.audio.done", "usage": usage}))


async def _events(
    first: SpeechEvent,
    events: AsyncGenerator[SpeechEvent, None],
    render: Callable[[SpeechAudio | SpeechResult], bytes],
) -> AsyncGenerator[bytes, None]:
    """The answer's events rendered. A failure, or a restarted job, after audio went out is
    an error event on SSE; a raw file cannot say so, so its connection is cut (the client
    sees an incomplete body, not a short file that looks whole)."""
    sent = False
    async with contextlib.aclosing(events):
        item: SpeechEvent = first
        while True:
            if isinstance(item, StreamRestarted):
                if sent:
                    failure = OpenAIError(
                        503,
                        "the job was redone from the start after its worker failed, and "
                        "the audio already sent cannot be taken back: retry the request",
                        code="stream_restarted",
                    )
                    if render is _raw:
                        raise failure
                    yield sse_event(failure.body())
                    return
            elif data := render(item):
                sent = True
                yield data
            if isinstance(item, SpeechResult):
                return
            try:
                item = await anext(events)
            except FLEET_FAILURES as exc:
                if render is _raw:
                    raise
                yield sse_event(fleet_error(exc).body())
                return
