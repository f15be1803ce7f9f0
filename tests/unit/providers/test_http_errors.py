"""Mapping HTTP failures to ProviderError codes, Retry-After parsing, SSE framing, redaction."""

from __future__ import annotations

import email.utils
from collections.abc import AsyncIterator

import httpx
import pytest

from contracts.errors import ErrorCode
from contracts.secrets import Secret
from providers.errors import ProviderError
from providers.http_api import (
    Redactor,
    SSEEvent,
    decode_json,
    error_from_event,
    error_from_exception,
    error_from_response,
    iter_sse,
    parse_retry_after,
)
from tests.unit.providers import API_KEY, fixture

REQUEST = httpx.Request("POST", "https://api.example.com/v1/chat/completions")
CONTEXT_EXCEEDED = ErrorCode.CONTEXT_LENGTH_EXCEEDED
NO_SECRETS = Redactor()


def response(status: int, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers, request=REQUEST)


@pytest.mark.parametrize(
    ("status", "name", "code"),
    [
        (401, "openai/error_401_invalid_api_key.json", ErrorCode.AUTH),
        (404, "openai/error_404_model_not_found.json", ErrorCode.NOT_FOUND),
        (400, "openai/error_400_context_length.json", ErrorCode.CONTEXT_LENGTH_EXCEEDED),
        (400, "openai/error_400_vllm_context_length_handwritten.json", CONTEXT_EXCEEDED),
        (400, "anthropic/error_400_prompt_too_long_handwritten.json", CONTEXT_EXCEEDED),
        (400, "llamacpp/error_400_context_exceeded_handwritten.json", CONTEXT_EXCEEDED),
        (429, "openai/error_429_rate_limit.json", ErrorCode.RATE_LIMIT),
        (429, "openai/error_429_insufficient_quota.json", ErrorCode.BUDGET_EXHAUSTED),
        (500, "openai/error_500.json", ErrorCode.PROVIDER_DOWN),
        (401, "anthropic/error_401.json", ErrorCode.AUTH),
        (429, "anthropic/error_429.json", ErrorCode.RATE_LIMIT),
        (429, "anthropic/error_429_spend_limit.json", ErrorCode.BUDGET_EXHAUSTED),
        (402, "anthropic/error_402_billing.json", ErrorCode.BUDGET_EXHAUSTED),
        (500, "anthropic/error_500.json", ErrorCode.PROVIDER_DOWN),
        (529, "anthropic/error_529.json", ErrorCode.PROVIDER_DOWN),
    ],
)
def test_recorded_error_bodies_map_to_codes(status: int, name: str, code: ErrorCode) -> None:
    error = error_from_response(response(status, fixture(name)), op="p.chat", redact=NO_SECRETS)
    assert error.code is code
    assert error.op == "p.chat"
    assert f"HTTP {status}" in error.detail


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (403, ErrorCode.AUTH),
        (402, ErrorCode.BUDGET_EXHAUSTED),
        (408, ErrorCode.TIMEOUT),
        (413, ErrorCode.INVALID_INPUT),
        (422, ErrorCode.INVALID_INPUT),
        (409, ErrorCode.INVALID_INPUT),
        (502, ErrorCode.PROVIDER_DOWN),
        (503, ErrorCode.PROVIDER_DOWN),
        (529, ErrorCode.PROVIDER_DOWN),
    ],
)
def test_status_alone_decides_when_the_body_says_nothing(status: int, code: ErrorCode) -> None:
    assert error_from_response(response(status, b""), op="p", redact=NO_SECRETS).code is code


def test_text_is_never_matched_only_structured_fields() -> None:
    # The words "quota" and "billing" in a plain rate-limit message must not make it a
    # budget error: only error.type / error.code do.
    body = b'{"error": {"message": "quota billing insufficient_quota", "type": "requests"}}'
    error = error_from_response(response(429, body), op="p", redact=NO_SECRETS)
    assert error.code is ErrorCode.RATE_LIMIT


def test_ollama_and_vllm_dialects() -> None:
    ollama = error_from_response(
        response(404, b'{"error": "model \\"llama9\\" not found, try pulling it first"}'),
        op="p",
        redact=NO_SECRETS,
    )
    assert ollama.code is ErrorCode.NOT_FOUND
    assert "llama9" in ollama.detail
    vllm = error_from_response(
        response(
            400,
            b'{"object": "error", "message": "bad", "type": "BadRequestError", '
            b'"param": null, "code": 400}',
        ),
        op="p",
        redact=NO_SECRETS,
    )
    assert vllm.code is ErrorCode.INVALID_INPUT
    assert "BadRequestError" in vllm.detail


def test_non_json_error_body_is_reported_by_status() -> None:
    error = error_from_response(
        response(502, fixture("openai/error_502_gateway.html")), op="p", redact=NO_SECRETS
    )
    assert error.code is ErrorCode.PROVIDER_DOWN
    assert "non-JSON body" in error.detail
    assert "502 Bad Gateway" in error.detail


def test_retry_after_travels_with_the_error() -> None:
    error = error_from_response(
        response(429, fixture("openai/error_429_rate_limit.json"), {"retry-after": "3"}),
        op="p",
        redact=NO_SECRETS,
    )
    assert error.retry_after_s == 3.0
    assert error.retryable


def test_parse_retry_after_forms() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)

    def parse(headers: dict[str, str]) -> float | None:
        return parse_retry_after(httpx.Headers(headers), now=lambda: now)

    assert parse({"retry-after": "5"}) == 5.0
    assert parse({"retry-after": "0.25"}) == 0.25
    assert parse({"retry-after": date}) == pytest.approx(30.0)
    assert parse({"retry-after": email.utils.formatdate(now - 30, usegmt=True)}) == 0.0
    assert parse({"retry-after-ms": "1500"}) == 1.5
    assert parse({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse({"retry-after-ms": "soon", "retry-after": "9"}) == 9.0
    assert parse({"retry-after": "tomorrow-ish"}) is None
    assert parse({"retry-after": "-4"}) is None
    assert parse({}) is None


def test_transport_exceptions() -> None:
    timeout = error_from_exception(
        httpx.ReadTimeout("slow", request=REQUEST), op="p", redact=NO_SECRETS
    )
    assert timeout.code is ErrorCode.TIMEOUT
    connect = error_from_exception(
        httpx.ConnectError("refused", request=REQUEST), op="p", redact=NO_SECRETS
    )
    assert connect.code is ErrorCode.PROVIDER_DOWN
    protocol = error_from_exception(
        httpx.RemoteProtocolError("peer closed", request=REQUEST), op="p", redact=NO_SECRETS
    )
    assert protocol.code is ErrorCode.PROVIDER_DOWN


def test_malformed_success_body_is_a_typed_unexpected_response() -> None:
    with pytest.raises(ProviderError, match="not valid JSON") as info:
        decode_json(b"{oops", dict, op="p", redact=NO_SECRETS)
    assert info.value.code is ErrorCode.UNEXPECTED_RESPONSE
    with pytest.raises(ProviderError, match="expected shape") as shape:
        decode_json(b"[1, 2]", dict, op="p", redact=NO_SECRETS)
    assert shape.value.code is ErrorCode.UNEXPECTED_RESPONSE


def test_redactor_scrubs_secrets_from_error_messages() -> None:
    redact = Redactor([Secret(API_KEY), None])
    assert API_KEY not in repr(redact)
    error = error_from_response(
        response(401, fixture("openai/error_401_invalid_api_key.json")), op="p", redact=redact
    )
    assert API_KEY not in str(error)
    assert "[redacted]" in str(error)
    html = error_from_response(
        response(500, f"<p>key={API_KEY}</p>".encode()), op="p", redact=redact
    )
    assert API_KEY not in str(html)


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def test_sse_framing() -> None:
    events = [
        e
        async for e in iter_sse(
            _lines(
                ": keep-alive comment",
                "event: message_start",
                'data: {"a": 1}',
                "",
                "data: line one",
                "data:line two",
                "",
                "",
                "event: tail",
                "data: no blank line at the end",
            )
        )
    ]
    assert events == [
        SSEEvent("message_start", '{"a": 1}'),
        SSEEvent(None, "line one\nline two"),
        SSEEvent("tail", "no blank line at the end"),
    ]


async def test_an_error_line_is_an_error_event() -> None:
    # llama.cpp server builds before 2025 send a failure in a stream as an `error:` line.
    events = [e async for e in iter_sse(_lines('error: {"code": 400}', ""))]
    assert events == [SSEEvent("error", '{"code": 400}')]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        # llama.cpp server: its status in error.code, its own type.
        (fixture("llamacpp/error_400_context_exceeded_handwritten.json"), CONTEXT_EXCEEDED),
        (
            b'{"code": 400, "message": "the request exceeds the available context size"}',
            CONTEXT_EXCEEDED,
        ),
        (
            b'{"error": {"code": 400, "message": "bad grammar", "type": "invalid_request_error"}}',
            ErrorCode.INVALID_INPUT,
        ),
        (
            b'{"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}',
            ErrorCode.PROVIDER_DOWN,
        ),
        # vLLM: its exception's name as type, the status as code.
        (
            b'{"error": {"message": "bad", "type": "BadRequestError", "code": 400}}',
            ErrorCode.INVALID_INPUT,
        ),
        (
            b'{"error": {"message": "slow down", "type": "requests", "code": 429}}',
            ErrorCode.RATE_LIMIT,
        ),
        # OpenAI and Anthropic: their types.
        (
            b'{"error": {"message": "The server is overloaded", "type": "server_error"}}',
            ErrorCode.PROVIDER_DOWN,
        ),
        (
            b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
            ErrorCode.PROVIDER_DOWN,
        ),
        (b'{"error": {"type": "rate_limit_error", "message": "Too many"}}', ErrorCode.RATE_LIMIT),
        # Nothing to go by: not retried, and no sign the provider is down.
        (b'{"error": "something broke"}', ErrorCode.UNEXPECTED_RESPONSE),
        (b"not json at all", ErrorCode.UNEXPECTED_RESPONSE),
    ],
)
def test_an_error_inside_a_stream_is_classified_by_its_content(
    data: bytes, code: ErrorCode
) -> None:
    error = error_from_event(data.decode(), op="p.chat", redact=NO_SECRETS)
    assert error.code is code
    assert "error in stream" in error.detail


def test_words_of_an_overflow_count_only_in_a_client_error() -> None:
    body = b'{"error": {"message": "maximum context length reached by the scheduler"}}'
    assert error_from_response(response(500, body), op="p", redact=NO_SECRETS).code is (
        ErrorCode.PROVIDER_DOWN
    )
    assert error_from_response(response(400, body), op="p", redact=NO_SECRETS).code is (
        CONTEXT_EXCEEDED
    )
    assert not CONTEXT_EXCEEDED.retryable
