"""The gateway's error answers, in OpenAI's shape: ``{"error": {"message", "type", "param",
"code"}}`` with the HTTP status OpenAI's API would answer. A fleet error code maps to its
status through the one table the batch output files use."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TypeVar

import msgspec
from starlette.types import Send

from contracts.errors import ContractViolation, ErrorCode
from producer_sdk import BrokerError, DeadlineExceeded, FleetRequestError, RequestRefused
from producer_sdk.batch.openai_chat_body import error_param
from producer_sdk.batch.openai_output_lines import HTTP_STATUS, error_type

log = logging.getLogger(__name__)
T = TypeVar("T")


class _ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    message: str
    type: str
    param: str | None
    code: str | None


class _Envelope(msgspec.Struct, frozen=True):
    error: _ErrorBody


class OpenAIError(Exception):
    """An answer of ``status`` with OpenAI's error body; ``param`` names the request field
    at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or error_type(status)
        self.headers = headers or {}  # Retry-After, for one

    def body(self) -> bytes:
        error = _ErrorBody(message=self.message, type=self.type, param=self.param, code=self.code)
        return msgspec.json.encode(_Envelope(error))


async def send_error(send: Send, error: OpenAIError) -> None:
    """``error`` answered straight to ASGI, by a middleware outside Starlette's handlers."""
    headers = [(b"content-type", b"application/json")]
    headers += [(name.encode(), value.encode()) for name, value in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": error.body()})


def invalid_request(message: str, param: str | None, code: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, param=param, code=code)


def decoded_body(raw: bytes, shape: type[T], *, unnamed_param: str | None = None) -> T:
    """A request body read as ``shape``: one that is not JSON, or not of that shape, is 400
    naming the field msgspec names (``unnamed_param`` when it names none)."""
    try:
        return msgspec.json.decode(raw, type=shape)
    except msgspec.ValidationError as exc:
        raise invalid_request(str(exc), error_param(exc) or unnamed_param) from exc
    except msgspec.DecodeError as exc:
        raise invalid_request(f"the body is not valid JSON: {exc}", None) from exc


FleetFailure = FleetRequestError | DeadlineExceeded | BrokerError | RequestRefused
# What a FleetClient call raises when its job fails or cannot be sent, for `except`.
FLEET_FAILURES = (FleetRequestError, DeadlineExceeded, BrokerError, RequestRefused)


def fleet_error(exc: FleetFailure) -> OpenAIError:
    """What a failed job is answered with: its error code's status (429 for a spent budget);
    504 past the deadline; 503 when Kafka cannot be reached (the app adds its Retry-After);
    413 or 400 for a request the SDK would not send."""
    if isinstance(exc, DeadlineExceeded):
        return OpenAIError(504, str(exc), code=ErrorCode.TIMEOUT.value)
    if isinstance(exc, BrokerError):
        # Kafka's own text names the brokers' addresses: the log gets it, the caller not.
        log.warning("the fleet cannot be reached: %s", exc)
        return OpenAIError(
            503, "the fleet cannot be reached; try again later", code="fleet_unavailable"
        )
    if isinstance(exc, RequestRefused):
        status = 413 if exc.reason is ContractViolation.OVERSIZED else 400
        return OpenAIError(status, str(exc), code=exc.code.value)
    if exc.code is ErrorCode.BUDGET_EXHAUSTED:
        # A spent budget (the tenant's own, workers/budgets.py, or the provider account's)
        # is answered as OpenAI answers a spent quota: 429, of type insufficient_quota.
        return OpenAIError(429, exc.reply.message, code=exc.code.value, type="insufficient_quota")
    status = HTTP_STATUS.get(exc.code, 500)
    return OpenAIError(status, exc.reply.message, code=exc.code.value)


async def from_fleet(call: Awaitable[T]) -> T:
    """``call``'s result; its fleet failure as the answer ``fleet_error`` makes of it."""
    try:
        return await call
    except FLEET_FAILURES as exc:
        raise fleet_error(exc) from exc
