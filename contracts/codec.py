"""Encoding and decoding of requests and reply chunks (msgpack by default, JSON accepted).

Encoders and decoders are built once at import; decoding errors become ContractError with
a message that says what was wrong and where.
"""

from __future__ import annotations

from typing import Final, TypeVar

import msgspec

from contracts.control import ControlMessage
from contracts.embed import EmbedRequest
from contracts.envelope import RequestHead
from contracts.errors import ContractError, ContractViolation
from contracts.generate import GenerateRequest
from contracts.names import DEFAULT_MAX_PAYLOAD_BYTES, SCHEMA_VERSION, ContentType
from contracts.replies import ReplyChunk
from contracts.transcribe import TranscribeRequest
from contracts.vectors import VectorDeleteRequest, VectorQueryRequest, VectorUpsertRequest

VectorsRequest = VectorUpsertRequest | VectorDeleteRequest | VectorQueryRequest
AnyRequest = GenerateRequest | EmbedRequest | TranscribeRequest | VectorsRequest

# One union per topic: a topic only accepts the kinds that belong on it.
TOPIC_REQUEST_TYPES: Final[dict[str, object]] = {
    "generate": GenerateRequest,
    "embed": EmbedRequest,
    "transcribe": TranscribeRequest,
    "vectors": VectorsRequest,
}

T = TypeVar("T")

_msgpack_encoder: Final = msgspec.msgpack.Encoder()
_json_encoder: Final = msgspec.json.Encoder()
_request_msgpack: Final = {k: msgspec.msgpack.Decoder(t) for k, t in TOPIC_REQUEST_TYPES.items()}
_request_json: Final = {k: msgspec.json.Decoder(t) for k, t in TOPIC_REQUEST_TYPES.items()}
_chunk_msgpack: Final = msgspec.msgpack.Decoder(ReplyChunk)
_chunk_json: Final = msgspec.json.Decoder(ReplyChunk)
_control: Final = msgspec.msgpack.Decoder(ControlMessage)
_head_msgpack: Final = msgspec.msgpack.Decoder(RequestHead)
_head_json: Final = msgspec.json.Decoder(RequestHead)


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


def decode_request(
    kind: str,
    payload: bytes,
    *,
    content_type: str | None = None,
    max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> AnyRequest:
    """Decode a request read from the topic of ``kind``; raise ContractError when it is bad."""
    if len(payload) > max_bytes:
        raise ContractError(
            f"{kind} request is {len(payload)} bytes; the limit is {max_bytes} bytes",
            reason=ContractViolation.OVERSIZED,
        )
    ctype = content_type_of(payload, content_type)
    decoders = _request_json if ctype == ContentType.JSON else _request_msgpack
    try:
        result: AnyRequest = decoders[kind].decode(payload)
    except msgspec.ValidationError as exc:
        raise ContractError(
            f"{kind} request does not match the schema: {exc}", reason=ContractViolation.SCHEMA
        ) from exc
    except msgspec.DecodeError as exc:
        raise ContractError(
            f"{kind} request is not valid {_format_name(ctype)}: {exc}",
            reason=ContractViolation.UNDECODABLE,
        ) from exc
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
    decoder = (
        _head_json if content_type_of(payload, content_type) == ContentType.JSON else _head_msgpack
    )
    try:
        return decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def decode_control(payload: bytes) -> ControlMessage:
    try:
        message: ControlMessage = _control.decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ContractError(
            f"control message is not valid: {exc}", reason=ContractViolation.SCHEMA
        ) from exc
    return message


def decode_chunk(payload: bytes, content_type: str | None = None) -> ReplyChunk:
    ctype = content_type_of(payload, content_type)
    decoder = _chunk_json if ctype == ContentType.JSON else _chunk_msgpack
    try:
        chunk: ReplyChunk = decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise ContractError(
            f"reply chunk does not match the schema: {exc}", reason=ContractViolation.SCHEMA
        ) from exc
    except msgspec.DecodeError as exc:
        raise ContractError(
            f"reply chunk is not valid {_format_name(ctype)}: {exc}",
            reason=ContractViolation.UNDECODABLE,
        ) from exc
    return chunk


def _format_name(content_type: str) -> str:
    return "JSON" if content_type == ContentType.JSON else "msgpack"
