"""Encoding and decoding of requests and reply chunks (msgpack by default, JSON accepted).

Encoders and decoders are built once at import; decoding errors become ContractError with
a message that says what was wrong and where.
"""

from __future__ import annotations

from typing import Final, Protocol, TypeVar

import msgspec

from contracts.control import ControlMessage
from contracts.embed import EmbedRequest
from contracts.envelope import RequestDeadlineField, RequestHead
from contracts.errors import ContractError, ContractViolation
from contracts.generate import GenerateRequest
from contracts.names import DEFAULT_MAX_PAYLOAD_BYTES, SCHEMA_VERSION, ContentType
from contracts.replies import ReplyChunk
from contracts.rerank import RerankRequest
from contracts.speech import SpeechRequest
from contracts.transcribe import TranscribeRequest
from contracts.vectors import VectorDeleteRequest, VectorQueryRequest, VectorUpsertRequest

VectorsRequest = VectorUpsertRequest | VectorDeleteRequest | VectorQueryRequest
AnyRequest = (
    GenerateRequest
    | EmbedRequest
    | TranscribeRequest
    | VectorsRequest
    | RerankRequest
    | SpeechRequest
)

# One union per topic: a topic only accepts the kinds that belong on it.
TOPIC_REQUEST_TYPES: Final[dict[str, object]] = {
    "generate": GenerateRequest,
    "embed": EmbedRequest,
    "transcribe": TranscribeRequest,
    "vectors": VectorsRequest,
    "rerank": RerankRequest,
    "speech": SpeechRequest,
}

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class _Decoder(Protocol[T_co]):
    def decode(self, buf: bytes, /) -> T_co: ...


_msgpack_encoder: Final = msgspec.msgpack.Encoder()
_json_encoder: Final = msgspec.json.Encoder()
_request_msgpack: Final = {k: msgspec.msgpack.Decoder(t) for k, t in TOPIC_REQUEST_TYPES.items()}
_request_json: Final = {k: msgspec.json.Decoder(t) for k, t in TOPIC_REQUEST_TYPES.items()}
_chunk_msgpack: Final = msgspec.msgpack.Decoder(ReplyChunk)
_chunk_json: Final = msgspec.json.Decoder(ReplyChunk)
_control_msgpack: Final = msgspec.msgpack.Decoder(ControlMessage)
_control_json: Final = msgspec.json.Decoder(ControlMessage)
# No control message or reply chunk the fleet writes comes near these (an embed result
# larger than one Kafka message travels in parts).
MAX_CONTROL_BYTES: Final = 64 * 1024
MAX_CHUNK_BYTES: Final = 16 * 1024 * 1024
_head_msgpack: Final = msgspec.msgpack.Decoder(RequestHead)
_head_json: Final = msgspec.json.Decoder(RequestHead)
_deadline_msgpack: Final = msgspec.msgpack.Decoder(RequestDeadlineField)
_deadline_json: Final = msgspec.json.Decoder(RequestDeadlineField)


def content_type_of(payload: bytes, declared: str | None = None) -> str:
    """The payload's encoding: the declared header if any, else sniffed.

    A request is a map: msgpack maps start with 0x80-0x8f, 0xde or 0xdf, JSON with ``{``
    (possibly after whitespace), so the two cannot be confused.
    """
    if declared in (ContentType.MSGPACK, ContentType.JSON):
        return declared
    if payload.lstrip()[:1] == b"{":
        return ContentType.JSON
    return ContentType.MSGPACK


def encode(obj: object, content_type: str = ContentType.MSGPACK) -> bytes:
    if content_type == ContentType.JSON:
        return _json_encoder.encode(obj)
    return _msgpack_encoder.encode(obj)


def _decoded(decoder: _Decoder[T], payload: bytes, what: str, content_type: str) -> T:
    """``payload`` decoded, or a ContractError that says why not. Nothing else escapes: the
    bytes come from anyone who can write to a topic."""
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise ContractError(
            f"{what} does not match the schema: {exc}", reason=ContractViolation.SCHEMA
        ) from exc
    except msgspec.DecodeError as exc:
        raise ContractError(
            f"{what} is not valid {_format_name(content_type)}: {exc}",
            reason=ContractViolation.UNDECODABLE,
        ) from exc
    except RecursionError:
        raise ContractError(
            f"{what} nests deeper than any message of the fleet's contract",
            reason=ContractViolation.TOO_DEEP,
        ) from None
    except Exception as exc:  # whatever else the bytes provoke is still the bytes' fault
        raise ContractError(
            f"{what} could not be decoded: {exc!r}", reason=ContractViolation.UNDECODABLE
        ) from exc


def _bounded(payload: bytes, what: str, max_bytes: int) -> None:
    if len(payload) > max_bytes:
        raise ContractError(
            f"{what} is {len(payload)} bytes; the limit is {max_bytes} bytes",
            reason=ContractViolation.OVERSIZED,
        )


def decode_request(
    kind: str,
    payload: bytes,
    *,
    content_type: str | None = None,
    max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> AnyRequest:
    """Decode a request read from the topic of ``kind``; raise ContractError when it is bad."""
    what = f"{kind} request"
    _bounded(payload, what, max_bytes)
    ctype = content_type_of(payload, content_type)
    decoders = _request_json if ctype == ContentType.JSON else _request_msgpack
    result: AnyRequest = _decoded(decoders[kind], payload, what, ctype)
    if result.schema_version > SCHEMA_VERSION:
        # Versions grow by adding optional fields: an older one reads fine, a newer one may
        # carry fields this worker would silently drop.
        raise ContractError(
            f"{kind} request is schema version {result.schema_version}; this worker reads "
            f"version {SCHEMA_VERSION} and older: upgrade the workers",
            reason=ContractViolation.UNSUPPORTED_VERSION,
        )
    return result


def decode_request_head(payload: bytes, content_type: str | None = None) -> RequestHead | None:
    """Best-effort read of request id and reply address from a message that failed to decode."""
    ctype = content_type_of(payload, content_type)
    decoder = _head_json if ctype == ContentType.JSON else _head_msgpack
    try:
        return _decoded(decoder, payload, "request head", ctype)
    except ContractError:
        return None


def decode_deadline_ms(payload: bytes, content_type: str | None = None) -> int | None:
    """A request's deadline (Unix ms), read leniently: None when it has none or when the
    message does not decode (the job's own decoding then says why)."""
    ctype = content_type_of(payload, content_type)
    decoder = _deadline_json if ctype == ContentType.JSON else _deadline_msgpack
    try:
        return _decoded(decoder, payload, "request deadline", ctype).deadline_ms
    except ContractError:
        return None


def decode_control(
    payload: bytes, content_type: str | None = None, *, max_bytes: int = MAX_CONTROL_BYTES
) -> ControlMessage:
    """A control message, msgpack or JSON (sniffed when no content type is given)."""
    _bounded(payload, "control message", max_bytes)
    ctype = content_type_of(payload, content_type)
    decoder = _control_json if ctype == ContentType.JSON else _control_msgpack
    message: ControlMessage = _decoded(decoder, payload, "control message", ctype)
    return message


def decode_chunk(
    payload: bytes, content_type: str | None = None, *, max_bytes: int = MAX_CHUNK_BYTES
) -> ReplyChunk:
    _bounded(payload, "reply chunk", max_bytes)
    ctype = content_type_of(payload, content_type)
    decoder = _chunk_json if ctype == ContentType.JSON else _chunk_msgpack
    chunk: ReplyChunk = _decoded(decoder, payload, "reply chunk", ctype)
    return chunk


def _format_name(content_type: str) -> str:
    return "JSON" if content_type == ContentType.JSON else "msgpack"
