"""``POST /v1/audio/transcriptions``: OpenAI's upload of one audio file as a fleet
transcribe job, answered in the ``response_format`` asked for, each built from what the
transcribe job returns (its text, language, duration and timed segments). A field the job
cannot honour is refused with 400 naming it, never dropped. With ``stream=true`` the text
comes as events instead (gateway/transcription_stream.py)."""

from __future__ import annotations

import contextlib
import math
from typing import Final, Literal, get_args

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from contracts.replies import TranscribeResult, TranscriptSegment
from gateway.errors import FLEET_FAILURES, OpenAIError, fleet_error, invalid_request
from gateway.multipart_form import Form, read_form
from gateway.overhead import awaiting_fleet
from producer_sdk import FleetClient, StreamRestarted

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
_FORMATS: Final = get_args(ResponseFormat)
# The formats whose answer is the transcript's timed segments.
_TIMED: Final = frozenset({"srt", "verbose_json", "vtt"})
# OpenAI's SDKs send an array field once per value, its name ending in "[]".
_GRANULARITIES: Final = "timestamp_granularities"
_FIELDS: Final = frozenset(
    {
        "file",
        "model",
        "language",
        "prompt",
        "response_format",
        "stream",
        "temperature",
        _GRANULARITIES,
    }
)


class TranscriptionCall(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    audio: bytes
    language: str | None
    response_format: ResponseFormat
    stream: bool = False  # the text as events while the job decodes (transcription_stream.py)


class Transcript(msgspec.Struct, frozen=True, kw_only=True):
    result: TranscribeResult
    segments: list[TranscriptSegment]


async def read_transcription_call(content_type: str | None, body: bytes) -> TranscriptionCall:
    form = await read_form(content_type, body)
    if unknown := sorted({name.removesuffix("[]") for name in form.names()} - _FIELDS):
        raise invalid_request(
            f"`{unknown[0]}` is not one the fleet honours in a transcription", unknown[0]
        )
    upload = form.files.get("file")
    if upload is None or not upload.data:
        raise invalid_request("`file` is required: the audio, uploaded as a file", "file")
    model = _one(form, "model")
    if not model:
        raise invalid_request("`model` is required: a model's name", "model")
    if _one(form, "prompt"):
        raise invalid_request(
            "`prompt` is not honoured: the fleet's transcribe jobs carry no prompt", "prompt"
        )
    _check_temperature(_one(form, "temperature"))
    response_format = _one(form, "response_format") or "json"
    if response_format not in _FORMATS:
        raise invalid_request(
            f"`response_format` {response_format!r} is not one the fleet answers: one of "
            + ", ".join(_FORMATS),
            "response_format",
        )
    _check_granularities(form, response_format)
    return TranscriptionCall(
        model=model,
        audio=upload.data,
        language=_one(form, "language") or None,
        response_format=response_format,  # type: ignore[arg-type]  # checked above
        stream=_stream(_one(form, "stream"), response_format),
    )


async def transcribe(
    request: Request, client: FleetClient, call: TranscriptionCall, request_id: str
) -> Response:
    try:
        transcript = await awaiting_fleet(request, _transcript(client, call, request_id))
    except FLEET_FAILURES as exc:
        raise fleet_error(exc) from exc
    if call.response_format in _TIMED and transcript.result.text and not transcript.segments:
        raise OpenAIError(
            502,
            f"the transcript came without the timed segments `response_format` "
            f"{call.response_format!r} is made of (its provider gives none, or it is a "
            "stored answer replayed for a repeated Idempotency-Key, which keeps the text "
            "alone): ask for json or text",
            code="no_segments",
            param="response_format",
        )
    return _answer(call.response_format, transcript)


async def _transcript(client: FleetClient, call: TranscriptionCall, request_id: str) -> Transcript:
    """The job's result with the segments that streamed before it (those of its last run,
    when its worker failed and another redid it)."""
    segments: list[TranscriptSegment] = []
    events = client.stream_transcribe(
        call.audio, model=call.model, language=call.language, request_id=request_id
    )
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, TranscriptSegment):
                segments.append(event)
            elif isinstance(event, StreamRestarted):
                segments.clear()
            elif isinstance(event, TranscribeResult):
                return Transcript(result=event, segments=segments)
    raise AssertionError("a reply stream ends with its final chunk or an exception")


def _answer(response_format: ResponseFormat, transcript: Transcript) -> Response:
    result = transcript.result
    if response_format == "text":
        return Response(result.text + "\n", media_type="text/plain")
    if response_format == "srt":
        return Response(srt(transcript.segments), media_type="text/plain")
    if response_format == "vtt":
        return Response(vtt(transcript.segments), media_type="text/vtt")
    body: object
    if response_format == "json":
        body = _Transcription(text=result.text, usage=_usage(result))
    else:
        body = _VerboseTranscription(
            language=result.language,
            duration=result.duration_s,
            text=result.text,
            segments=[
                _Segment(id=i, start=s.start_s, end=s.end_s, text=s.text)
                for i, s in enumerate(transcript.segments)
            ],
            usage=_usage(result),
        )
    return Response(msgspec.json.encode(body), media_type="application/json")


def srt(segments: list[TranscriptSegment]) -> str:
    """SubRip: numbered cues, times as ``HH:MM:SS,mmm``."""
    return "".join(
        f"{n}\n{_clock(s.start_s, ',')} --> {_clock(s.end_s, ',')}\n{s.text}\n\n"
        for n, s in enumerate(segments, start=1)
    )


def vtt(segments: list[TranscriptSegment]) -> str:
    """WebVTT: a header, then cues with times as ``HH:MM:SS.mmm``."""
    cues = "".join(
        f"{_clock(s.start_s, '.')} --> {_clock(s.end_s, '.')}\n{s.text}\n\n" for s in segments
    )
    return "WEBVTT\n\n" + cues


def _clock(seconds: float, separator: str) -> str:
    ms = round(seconds * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    whole, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole:02d}{separator}{ms:03d}"


class _Usage(msgspec.Struct, frozen=True, kw_only=True):
    # OpenAI bills Whisper by the second of audio, rounded up.
    type: str = "duration"
    seconds: int


class _Transcription(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    text: str
    usage: _Usage | None = None


class _Segment(msgspec.Struct, frozen=True, kw_only=True):
    # OpenAI's segments also carry the decoder's log probabilities and token ids; the
    # fleet's transcript has none, so they are left out rather than made up.
    id: int
    start: float
    end: float
    text: str


class _VerboseTranscription(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    task: str = "transcribe"
    language: str | None
    duration: float | None
    text: str
    segments: list[_Segment]
    usage: _Usage | None = None


def _usage(result: TranscribeResult) -> _Usage | None:
    if result.duration_s is None:
        return None
    return _Usage(seconds=math.ceil(result.duration_s))


def _one(form: Form, name: str) -> str | None:
    values = form.fields.get(name)
    if values is None:
        if name in form.files:
            raise invalid_request(f"`{name}` must be a text field, not a file", name)
        return None
    if len(values) > 1:
        raise invalid_request(f"`{name}` is given {len(values)} times: give it once", name)
    return values[0]


def _stream(value: str | None, response_format: str) -> bool:
    """Whether to stream: a form field, so the SDKs send it as the text "true" or "false"."""
    if value is None or value == "false":
        return False
    if value != "true":
        raise invalid_request("`stream` must be true or false", "stream")
    if response_format in _TIMED:
        raise invalid_request(
            f"`stream` is for `response_format` json or text, not {response_format!r}: "
            "the streamed events carry the text alone, and a timed format is made from the "
            "whole transcript's segments; ask for it without `stream`",
            "stream",
        )
    return True


def _check_temperature(value: str | None) -> None:
    """Whisper's own decoding starts at temperature 0 and raises it when a segment decodes
    badly, which is what OpenAI's API does at 0 (its default): 0 is honoured, no other."""
    if value is None:
        return
    try:
        temperature = float(value)
    except ValueError:
        raise invalid_request("`temperature` must be a number", "temperature") from None
    if temperature != 0:
        raise invalid_request(
            "`temperature` must be 0 if given: the fleet's transcribers decode from 0 and "
            "raise it only where a segment fails (as OpenAI's API does at 0)",
            "temperature",
        )


def _check_granularities(form: Form, response_format: str) -> None:
    given = form.fields.get(_GRANULARITIES + "[]", []) + form.fields.get(_GRANULARITIES, [])
    if not given:
        return
    if response_format != "verbose_json":
        raise invalid_request(
            "`timestamp_granularities` needs `response_format` verbose_json", _GRANULARITIES
        )
    if other := sorted(set(given) - {"segment"}):
        raise invalid_request(
            f"`timestamp_granularities` {other[0]!r} is not honoured: the fleet's transcripts "
            "are timed by segment, not by word",
            _GRANULARITIES,
        )
