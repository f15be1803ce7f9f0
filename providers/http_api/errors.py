"""Errors from HTTP providers' responses: the code from the status and the body's structured
fields (never from its text, but for the few phrasings that are a server's only sign of a
context overflow), Retry-After, and secrets scrubbed from whatever is reported."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

import httpx
import msgspec

from contracts.errors import ErrorCode
from contracts.secrets import Secret
from providers.errors import ProviderError

_REDACTED: Final = "[redacted]"
_MAX_DETAIL_CHARS: Final = 500

# Body fields (error.type, error.code, error.details.error_code) that mean money, not load:
# retrying them cannot succeed until someone pays, whatever the status says (OpenAI sends
# insufficient_quota with 429; Anthropic sends its spend cap as a 429 rate_limit_error).
_BUDGET_MARKERS: Final = frozenset(
    {
        "insufficient_quota",
        "billing_error",
        "billing_hard_limit_reached",
        "billing_not_active",
        "enforced_spend_limit_reached",
    }
)

# Body fields that mean the prompt (with max_tokens) does not fit the model's context:
# OpenAI's error.code, llama.cpp server's error.type.
_CONTEXT_MARKERS: Final = frozenset({"context_length_exceeded", "exceed_context_size_error"})
# What servers that have no such field say instead, in a client error or an error in a
# stream (lower case): OpenAI, vLLM and Mistral; Anthropic's invalid_request_error (the two
# phrasings); llama.cpp server.
_CONTEXT_PHRASES: Final = (
    "maximum context length",
    "prompt is too long",
    "exceed context limit",
    "exceeds the available context size",
)

# For errors that arrive without a status (an error event in the middle of a stream).
_TYPE_CODES: Final[Mapping[str, ErrorCode]] = {
    "authentication_error": ErrorCode.AUTH,
    "permission_error": ErrorCode.AUTH,
    "not_found_error": ErrorCode.NOT_FOUND,
    "invalid_request_error": ErrorCode.INVALID_INPUT,
    "request_too_large": ErrorCode.INVALID_INPUT,
    "rate_limit_error": ErrorCode.RATE_LIMIT,
    "rate_limit_exceeded": ErrorCode.RATE_LIMIT,
    "timeout_error": ErrorCode.TIMEOUT,
    "overloaded_error": ErrorCode.PROVIDER_DOWN,
    "api_error": ErrorCode.PROVIDER_DOWN,
    "server_error": ErrorCode.PROVIDER_DOWN,
    # vLLM's exception names; llama.cpp server's types (it also sends the status as code).
    "BadRequestError": ErrorCode.INVALID_INPUT,
    "NotFoundError": ErrorCode.NOT_FOUND,
    "InternalServerError": ErrorCode.PROVIDER_DOWN,
    "not_supported_error": ErrorCode.INVALID_INPUT,
    "unavailable_error": ErrorCode.PROVIDER_DOWN,
}


class Redactor:
    """Replaces secret values in any text that may leave the process (errors, logs)."""

    __slots__ = ("_values",)

    def __init__(self, secrets: Iterable[Secret | None] = ()) -> None:
        # Servers sometimes echo the key back ("Incorrect API key provided: sk-...").
        self._values = tuple(s.reveal() for s in secrets if s)

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, _REDACTED)
        return text

    def __repr__(self) -> str:
        return f"Redactor({len(self._values)} secrets)"


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The structured part of a provider's error body, whatever its dialect."""

    type: str | None = None
    code: str | None = None
    detail_code: str | None = None
    message: str | None = None


def _str_or_none(value: Any) -> str | None:
    # vLLM once sent `"code": 400`; a number is still a structured code.
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def error_info(body: Any) -> ErrorInfo:
    """Read type/code/message from OpenAI (``{"error": {...}}``), Anthropic
    (``{"type": "error", "error": {...}}``), Ollama (``{"error": "..."}``) or flat bodies."""
    if not isinstance(body, dict):
        return ErrorInfo()
    error = body.get("error")
    if isinstance(error, str):
        return ErrorInfo(message=error)
    source: dict[str, Any] = error if isinstance(error, dict) else body
    details = source.get("details")
    return ErrorInfo(
        type=_str_or_none(source.get("type")),
        code=_str_or_none(source.get("code")),
        detail_code=_str_or_none(details.get("error_code")) if isinstance(details, dict) else None,
        message=_str_or_none(source.get("message")),
    )


def _code_for_status(status: int) -> ErrorCode:
    if status in (401, 403):
        return ErrorCode.AUTH
    if status == 402:
        return ErrorCode.BUDGET_EXHAUSTED
    if status == 404:
        return ErrorCode.NOT_FOUND
    if status == 408:
        return ErrorCode.TIMEOUT
    if status == 429:
        return ErrorCode.RATE_LIMIT
    if 400 <= status < 500:
        return ErrorCode.INVALID_INPUT  # 400, 413, 422 and the rest of the client errors
    return ErrorCode.PROVIDER_DOWN  # 5xx, 529 (Anthropic "overloaded"), anything unexpected


def _context_overflow(status: int | None, info: ErrorInfo) -> bool:
    """Whether the error says the prompt does not fit the model's context window."""
    if {info.type, info.code, info.detail_code} & _CONTEXT_MARKERS:
        return True
    if status is not None and not 400 <= status < 500:
        return False  # an overloaded server that words its 5xx oddly has not overflowed
    message = (info.message or "").lower()
    return any(phrase in message for phrase in _CONTEXT_PHRASES)


def _in_stream(info: ErrorInfo) -> ErrorCode:
    """The code of an error event inside a stream that already began (no status to go by):
    its type, or the HTTP status some servers put in its code (vLLM, llama.cpp server)."""
    for field in (info.type, info.code):
        if field is not None and field in _TYPE_CODES:
            return _TYPE_CODES[field]
    if info.code is not None and info.code.isdigit() and 400 <= int(info.code) < 600:
        return _code_for_status(int(info.code))
    # Neither a type nor a code: not an error in the shape of any API, and no sign that
    # the provider is down, so not retried and no mark on its circuit breaker.
    return ErrorCode.UNEXPECTED_RESPONSE


def classify(status: int | None, info: ErrorInfo) -> ErrorCode:
    """The ErrorCode for a status (None mid-stream) and the body's structured fields."""
    markers = {info.type, info.code, info.detail_code}
    if markers & _BUDGET_MARKERS:
        return ErrorCode.BUDGET_EXHAUSTED
    if _context_overflow(status, info):
        return ErrorCode.CONTEXT_LENGTH_EXCEEDED
    if status is None:
        return _in_stream(info)
    if status >= 500 and info.type == "timeout_error":
        return ErrorCode.TIMEOUT
    return _code_for_status(status)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > _MAX_DETAIL_CHARS:
        return text[:_MAX_DETAIL_CHARS] + "..."
    return text


def parse_retry_after(
    headers: httpx.Headers, *, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms`` (OpenAI), then
    ``retry-after`` as seconds or as an HTTP-date. None when absent or unreadable."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            ms = -1.0
        if ms >= 0:
            return ms / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - now(), 0.0)


def error_from_body(
    status: int | None,
    body: Any,
    *,
    op: str,
    redact: Redactor,
    retry_after_s: float | None = None,
) -> ProviderError:
    """A ProviderError from a decoded error body (a response's, or an SSE error event's)."""
    info = error_info(body)
    code = classify(status, info)
    parts = [f"HTTP {status}" if status is not None else "error in stream"]
    kind = info.type or info.code
    if kind:
        parts.append(f"({kind})")
    detail = " ".join(parts)
    if info.message:
        detail += f": {_clip(redact(info.message))}"
    return ProviderError(code, op, detail, retry_after_s=retry_after_s)


def error_from_event(data: str, *, op: str, redact: Redactor) -> ProviderError:
    """A ProviderError from the data of an error event in a stream: a JSON error body, or
    plain words."""
    try:
        body: Any = msgspec.json.decode(data)
    except msgspec.DecodeError:
        body = {"error": data}
    return error_from_body(None, body, op=op, redact=redact)


def error_from_response(
    response: httpx.Response,
    *,
    op: str,
    redact: Redactor,
    now: Callable[[], float] = time.time,
) -> ProviderError:
    """Map a failed response (its body already read) to a ProviderError."""
    retry_after = parse_retry_after(response.headers, now=now)
    try:
        body: Any = msgspec.json.decode(response.content) if response.content else None
    except msgspec.DecodeError:
        # Proxies answer with HTML pages; the status still says what happened.
        code = classify(response.status_code, ErrorInfo())
        text = _clip(redact(response.content.decode("utf-8", "replace")))
        return ProviderError(
            code,
            op,
            f"HTTP {response.status_code} with a non-JSON body: {text!r}",
            retry_after_s=retry_after,
        )
    return error_from_body(
        response.status_code, body, op=op, redact=redact, retry_after_s=retry_after
    )


async def raise_for_status(response: httpx.Response, *, op: str, redact: Redactor) -> None:
    """Raise the mapped ProviderError for a 4xx/5xx response (reads a streamed body first)."""
    if response.is_success:
        return
    await response.aread()
    raise error_from_response(response, op=op, redact=redact)


def error_from_exception(exc: httpx.HTTPError, *, op: str, redact: Redactor) -> ProviderError:
    """Transport failures: timeouts are ``timeout``; everything else means we could not
    talk to the provider, so ``provider_down`` (retryable)."""
    kind = type(exc).__name__
    text = redact(str(exc)) or "no detail"
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(ErrorCode.TIMEOUT, op, f"{kind}: {text}")
    return ProviderError(ErrorCode.PROVIDER_DOWN, op, f"{kind}: {text}")


T = TypeVar("T")


def decode_with(
    decoder: msgspec.json.Decoder[T], data: str | bytes, *, what: str, op: str, redact: Redactor
) -> T:
    """One streamed item (a chunk, an event) decoded by a decoder built once. A provider
    that sends one of the wrong shape will again: ``unexpected_response``, not retried, no
    mark on the circuit breaker."""
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProviderError(
            ErrorCode.UNEXPECTED_RESPONSE, op, f"malformed {what}: {redact(str(exc))}"
        ) from exc


def decode_json(content: bytes, type_: type[Any], *, op: str, redact: Redactor) -> Any:
    """Decode a successful response body into ``type_``; a body that does not match means
    the provider (or a proxy in front of it) answers in a shape its API does not have, and
    will again: ``unexpected_response``, not retried, no mark on the circuit breaker."""
    try:
        return msgspec.json.decode(content, type=type_)
    except msgspec.ValidationError as exc:
        raise ProviderError(
            ErrorCode.UNEXPECTED_RESPONSE,
            op,
            f"the response body does not have the expected shape: {redact(str(exc))}",
        ) from exc
    except msgspec.DecodeError as exc:
        snippet = _clip(redact(content[:200].decode("utf-8", "replace")))
        raise ProviderError(
            ErrorCode.UNEXPECTED_RESPONSE,
            op,
            f"the response body is not valid JSON: {snippet!r}",
        ) from exc
