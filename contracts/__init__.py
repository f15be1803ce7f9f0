"""The wire contract of the fleet: msgspec Structs for requests and replies. No I/O here."""

from contracts.codec import (
    AnyRequest,
    content_type_of,
    decode_chunk,
    decode_control,
    decode_request,
    decode_request_head,
    encode,
)
from contracts.control import CancelJob
from contracts.embed import EmbedRequest
from contracts.envelope import ReplyAddress, Request, RequestHead
from contracts.errors import ConfigError, ContractError, ErrorCode, FleetError
from contracts.generate import ChatMessage, GenerateRequest, ToolCall, ToolSpec
from contracts.names import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_NAMESPACE,
    DEFAULT_TENANT,
    JOB_KINDS,
    SCHEMA_VERSION,
    ContentType,
    Header,
    control_topic,
    dead_letter_topic,
    reply_topic,
    request_topic,
    retry_topic,
)
from contracts.replies import (
    Chunk,
    EmbedResult,
    ErrorReply,
    Final,
    GenerateResult,
    ReplyChunk,
    TextDelta,
    TranscribeResult,
    TranscriptSegment,
    VectorMatch,
    VectorResult,
)
from contracts.transcribe import TranscribeRequest
from contracts.usage import Usage
from contracts.vectors import (
    VectorDeleteRequest,
    VectorQueryRequest,
    VectorRecord,
    VectorUpsertRequest,
)

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DEFAULT_NAMESPACE",
    "DEFAULT_TENANT",
    "JOB_KINDS",
    "SCHEMA_VERSION",
    "AnyRequest",
    "CancelJob",
    "ChatMessage",
    "Chunk",
    "ConfigError",
    "ContentType",
    "ContractError",
    "EmbedRequest",
    "EmbedResult",
    "ErrorCode",
    "ErrorReply",
    "Final",
    "FleetError",
    "GenerateRequest",
    "GenerateResult",
    "Header",
    "ReplyAddress",
    "ReplyChunk",
    "Request",
    "RequestHead",
    "TextDelta",
    "ToolCall",
    "ToolSpec",
    "TranscribeRequest",
    "TranscribeResult",
    "TranscriptSegment",
    "Usage",
    "VectorDeleteRequest",
    "VectorMatch",
    "VectorQueryRequest",
    "VectorRecord",
    "VectorResult",
    "VectorUpsertRequest",
    "content_type_of",
    "control_topic",
    "dead_letter_topic",
    "decode_chunk",
    "decode_control",
    "decode_request",
    "decode_request_head",
    "encode",
    "reply_topic",
    "request_topic",
    "retry_topic",
]
