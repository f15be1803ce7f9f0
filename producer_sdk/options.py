"""What the client's calls take and give besides their main arguments: the typed options of
generate and transcribe, the events their streams yield, and a request's common head."""

from __future__ import annotations

from typing import TypedDict

from contracts.envelope import ReplyAddress
from contracts.generate import ToolChoice, ToolSpec
from contracts.names import Lane
from contracts.replies import (
    GenerateResult,
    SpeechAudio,
    SpeechResult,
    TextDelta,
    ToolCallDelta,
    TranscribeResult,
    TranscriptSegment,
)
from contracts.response_format import ResponseFormat
from contracts.speech import SpeechFormat
from producer_sdk.replies import StreamRestarted

GenerateEvent = TextDelta | ToolCallDelta | StreamRestarted | GenerateResult
TranscribeEvent = TranscriptSegment | StreamRestarted | TranscribeResult
SpeechEvent = SpeechAudio | StreamRestarted | SpeechResult


class GenerateOptions(TypedDict, total=False):
    """What ``generate`` and ``stream_generate`` send besides the messages and model: the
    session, the provider, and the chat options of contracts.generate.ChatOptions. The
    request is built from these by name, so the type checker holds each to the field of
    GenerateRequest it fills (tests/unit/test_chat_options.py holds the names)."""

    session_id: str | None  # the worker keeps this conversation's history in Redis
    provider: str | None  # a chat provider by name; None routes by model
    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    stop: list[str] | None
    # Offered to the model; its calls come as ToolCallDelta events and in the result's
    # tool_calls (finish_reason "tool_calls"). Answer them with ChatMessage(role="tool",
    # tool_call_id=...) in the next call of the same session.
    tools: list[ToolSpec] | None
    tool_choice: ToolChoice | None  # "auto", "none", "required" or NamedToolChoice(name=...)
    seed: int | None
    presence_penalty: float | None
    frequency_penalty: float | None
    user: str | None  # the end user, for providers that track abuse per user
    # JSON out: ResponseFormatJsonObject(), or ResponseFormatJsonSchema(json_schema=
    # JsonSchemaSpec(name=..., schema={...})); an answer of another shape fails the call
    # with FleetRequestError code "output_invalid".
    response_format: ResponseFormat | None


class TranscribeOptions(TypedDict, total=False):
    """Options of ``transcribe`` and ``stream_transcribe`` besides the audio and model."""

    audio_url: str | None  # instead of the bytes: a URL the worker may fetch
    language: str | None
    provider: str | None
    timeout_s: float | None  # the deadline, from now; default: the client's
    request_id: str | None  # default: a new uuid; the same id twice runs the model once
    # "batch": sent on the batch lane, served with what interactive work leaves
    # (docs/decisions/0021-priority-lanes.md); default "interactive".
    lane: Lane


class SpeechOptions(TypedDict, total=False):
    """Options of ``speech`` and ``stream_speech`` besides the text, model and voice."""

    response_format: SpeechFormat  # default "wav"; flac, mp3, opus where workers encode them
    speed: float  # 0.25 to 4.0 (a voice may speak a narrower range); default 1.0
    instructions: str | None  # how to speak, for the models that take it
    provider: str | None
    timeout_s: float | None  # the deadline, from now; default: the client's
    request_id: str | None  # default: a new unique id
    lane: Lane  # default "interactive"


class RequestHead(TypedDict):
    """The fields every request the client sends starts with."""

    request_id: str
    tenant: str
    reply_to: ReplyAddress
    deadline_ms: int
