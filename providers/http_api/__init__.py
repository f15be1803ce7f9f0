"""What every provider that calls an HTTP API shares: its config and client, errors read
from responses, server-sent events, and the provider base class."""

from providers.http_api.client import HttpClient, HttpConfig, auth_headers
from providers.http_api.errors import (
    ErrorInfo,
    Redactor,
    classify,
    decode_json,
    decode_with,
    error_from_body,
    error_from_event,
    error_from_exception,
    error_from_response,
    error_info,
    parse_retry_after,
    raise_for_status,
)
from providers.http_api.provider import HttpApiProvider
from providers.http_api.sse import SSEEvent, iter_sse

__all__ = [
    "ErrorInfo",
    "HttpApiProvider",
    "HttpClient",
    "HttpConfig",
    "Redactor",
    "SSEEvent",
    "auth_headers",
    "classify",
    "decode_json",
    "decode_with",
    "error_from_body",
    "error_from_event",
    "error_from_exception",
    "error_from_response",
    "error_info",
    "iter_sse",
    "parse_retry_after",
    "raise_for_status",
]
