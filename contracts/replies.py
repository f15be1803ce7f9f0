"""Reply chunks streamed back on a reply topic.

Every chunk carries the request id, the attempt it belongs to and a sequence number that
starts at 0 for each attempt. A chunk from a higher attempt means the worker restarted the
job: the SDK tells the caller and discards what the older attempt sent.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts.errors import ErrorCode
from contracts.generate import ToolCall
from contracts.usage import Usage


class Chunk(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    request_id: str
    attempt: int = 0
    seq: int

    @property
    def is_final(self) -> bool:
        return False


class Final(Chunk, frozen=True, kw_only=True):
    """Base of the chunks that end a reply stream."""

    @property
    def is_final(self) -> bool:
        return True


class TextDelta(Chunk, frozen=True, kw_only=True, tag="delta"):
    text: str


class ToolCallDelta(Chunk, frozen=True, kw_only=True, tag="tool_call_delta"):
    """A piece of tool call ``index`` (0, 1, ... in the order the model began them) as the
    model writes it: the first piece of a call has its ``id`` and ``name``, and the pieces'
    ``arguments`` joined are its JSON arguments. GenerateResult.tool_calls has them whole."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class GenerateResult(Final, frozen=True, kw_only=True, tag="generate_result"):
    text: str
    model: str
    # "tool_calls" when the model stopped to ask for tool_calls: answer each with a message
    # of role "tool" (its tool_call_id) in the next request of the session.
    finish_reason: str = "stop"
    usage: Usage = Usage()
    tool_calls: list[ToolCall] | None = None


class EmbedPart(Chunk, frozen=True, kw_only=True, tag="embed_part"):
    """Rows ``first_row`` onwards of an embed result too large for one message; the parts
    come in order, then the EmbedResult with the rows after them (contracts/embed_parts.py)."""

    first_row: int
    dimension: int
    vectors: list[list[float]] = []
    vectors_float32: bytes | None = None


class EmbedResult(Final, frozen=True, kw_only=True, tag="embed_result"):
    model: str
    dimension: int
    # One of the two, as the request's encoding_format asked: lists of numbers, or
    # len(rows) x dimension little-endian float32 values, row after row.
    vectors: list[list[float]] = []
    vectors_float32: bytes | None = None
    # The rows before this one came in EmbedPart chunks (0: this chunk has them all).
    first_row: int = 0
    custom_ids: list[str] | None = None
    usage: Usage = Usage()


class TranscriptSegment(Chunk, frozen=True, kw_only=True, tag="segment"):
    start_s: float
    end_s: float
    text: str


class TranscribeResult(Final, frozen=True, kw_only=True, tag="transcribe_result"):
    model: str
    text: str
    language: str | None = None
    duration_s: float | None = None


class RankedDocument(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One document of a rerank result: its position in the request, its score (higher is
    more relevant; comparable within one model only), and itself when asked for."""

    index: int
    relevance_score: float
    document: str | dict[str, str] | None = None


class RerankResult(Final, frozen=True, kw_only=True, tag="rerank_result"):
    model: str
    # Best first; `top_n` of them when the request set it.
    results: list[RankedDocument]
    usage: Usage = Usage()


class SpeechAudio(Chunk, frozen=True, kw_only=True, tag="speech_audio"):
    """The next bytes of the audio, in the request's format, as the voice makes them: the
    chunks' ``audio`` joined in order is the whole file (a wav's header, in the first,
    gives no length: the stream's length is known only at its end)."""

    audio: bytes


class SpeechUsage(msgspec.Struct, frozen=True, kw_only=True):
    characters: int  # of the request's input
    audio_s: float  # seconds of audio made
    # At the catalogue's price per million characters; None when the model has no price.
    cost_usd: Annotated[float, msgspec.Meta(ge=0)] | None = None


class SpeechResult(Final, frozen=True, kw_only=True, tag="speech_result"):
    model: str
    voice: str
    response_format: str
    sample_rate: int
    # All SpeechAudio chunks' bytes together: a caller that got fewer missed some (the
    # ledger keeps a job's final, not its audio: docs/decisions/0041-speech-voices.md).
    audio_bytes: int
    usage: SpeechUsage


class VectorMatch(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    score: float
    metadata: dict[str, str | int | float | bool] = msgspec.field(default_factory=dict)


class VectorResult(Final, frozen=True, kw_only=True, tag="vector_result"):
    collection: str
    upserted: int = 0
    deleted: int = 0
    matches: list[VectorMatch] | None = None


class ErrorReply(Final, frozen=True, kw_only=True, tag="error"):
    code: ErrorCode
    message: str
    retryable: bool = False


ReplyChunk = (
    TextDelta
    | ToolCallDelta
    | EmbedPart
    | TranscriptSegment
    | SpeechAudio
    | GenerateResult
    | EmbedResult
    | TranscribeResult
    | SpeechResult
    | VectorResult
    | RerankResult
    | ErrorReply
)
