"""The fleet's exception hierarchy and the error codes that travel on the wire."""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    """Why a job failed; the same codes appear in error replies and dead-letter headers."""

    AUTH = "auth"
    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    INVALID_INPUT = "invalid_input"
    PROVIDER_DOWN = "provider_down"
    NOT_FOUND = "not_found"
    BUDGET_EXHAUSTED = "budget_exhausted"
    # The provider answered, but not in the shape its API has: retrying gets the same.
    UNEXPECTED_RESPONSE = "unexpected_response"
    # The model's answer does not have the shape the request's response_format asked for
    # (not JSON, cut off at max_tokens, or against the schema): the request itself was fine.
    OUTPUT_INVALID = "output_invalid"
    # The prompt plus max_tokens does not fit the model's context window: retrying gets the
    # same, but a fallback chain moves on to a model with a larger window.
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
    INTERNAL = "internal"

    @property
    def retryable(self) -> bool:
        return self in _RETRYABLE


_RETRYABLE = frozenset({ErrorCode.RATE_LIMIT, ErrorCode.TIMEOUT, ErrorCode.PROVIDER_DOWN})


class FleetError(Exception):
    """Base of every error the fleet raises on purpose."""


class ConfigError(FleetError):
    """A configuration value is missing or wrong; the message names the field."""


class StartupCheckFailed(FleetError):
    """A provider could not load, or failed its one real call, before the worker was ready."""

    def __init__(self, category: str, provider: str, cause: BaseException) -> None:
        detail = str(cause) or type(cause).__name__
        super().__init__(
            f"{category} provider {provider!r} failed its start-up check: "
            f"{type(cause).__name__}: {detail}"
        )
        self.category = category
        self.provider = provider


class ContractViolation(enum.StrEnum):
    """How a message breaks the wire contract."""

    OVERSIZED = "oversized"
    SCHEMA = "schema"
    UNDECODABLE = "undecodable"
    UNSUPPORTED_VERSION = "unsupported_version"  # a newer schema version than this reader's
    TOO_DEEP = "too_deep"  # nested deeper than any real message (a depth bomb)
    BAD_HEADER = "bad_header"  # a fleet header whose value is not what the fleet writes


class ContractError(FleetError):
    """A message does not match the wire contract (undecodable, wrong schema, too large)."""

    def __init__(
        self, message: str, *, reason: ContractViolation = ContractViolation.SCHEMA
    ) -> None:
        super().__init__(message)
        self.reason = reason
