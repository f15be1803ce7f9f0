"""The producer SDK: send AI jobs to the fleet over Kafka and stream the answers back."""

from contracts.batch import BatchInfo, RequestCounts
from contracts.content import ImagePart, ImageUrl, TextPart
from contracts.generate import ChatMessage, NamedToolChoice, ToolCall, ToolSpec
from contracts.names import Lane, shared_reply_topic
from contracts.replies import GenerateResult, SpeechAudio, SpeechResult, TextDelta, ToolCallDelta
from contracts.response_format import (
    JsonSchemaSpec,
    ResponseFormatJsonObject,
    ResponseFormatJsonSchema,
    ResponseFormatText,
)
from contracts.secrets import Secret
from contracts.usage import Usage
from contracts.vectors import VectorRecord
from producer_sdk.batches import BatchClient, BatchNotFound
from producer_sdk.client import FleetClient
from producer_sdk.errors import (
    BrokerError,
    DeadlineExceeded,
    FleetRequestError,
    NotConnected,
    RequestRefused,
)
from producer_sdk.options import GenerateEvent, SpeechEvent
from producer_sdk.replies import StreamRestarted
from producer_sdk.speech import AudioIncomplete, SpeechJoiner, SpokenAudio
from producer_sdk.telemetry import export_telemetry
from producer_sdk.tenant_clients import TenantClients
from transport.connection import KafkaAccessError, KafkaSecurity

__all__ = [
    "AudioIncomplete",
    "BatchClient",
    "BatchInfo",
    "BatchNotFound",
    "BrokerError",
    "ChatMessage",
    "DeadlineExceeded",
    "FleetClient",
    "FleetRequestError",
    "GenerateEvent",
    "GenerateResult",
    "ImagePart",
    "ImageUrl",
    "JsonSchemaSpec",
    "KafkaAccessError",
    "KafkaSecurity",
    "Lane",
    "NamedToolChoice",
    "NotConnected",
    "RequestCounts",
    "RequestRefused",
    "ResponseFormatJsonObject",
    "ResponseFormatJsonSchema",
    "ResponseFormatText",
    "Secret",
    "SpeechAudio",
    "SpeechEvent",
    "SpeechJoiner",
    "SpeechResult",
    "SpokenAudio",
    "StreamRestarted",
    "TenantClients",
    "TextDelta",
    "TextPart",
    "ToolCall",
    "ToolCallDelta",
    "ToolSpec",
    "Usage",
    "VectorRecord",
    "export_telemetry",
    "shared_reply_topic",
]
