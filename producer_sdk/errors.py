"""Errors the SDK raises to its caller."""

from __future__ import annotations

from contracts.errors import ErrorCode, FleetError
from contracts.replies import ErrorReply


class FleetRequestError(FleetError):
    """The fleet answered a request with an error reply."""

    def __init__(self, reply: ErrorReply) -> None:
        super().__init__(f"request {reply.request_id} failed [{reply.code}]: {reply.message}")
        self.reply = reply
        self.code: ErrorCode = reply.code
        self.retryable = reply.retryable


class DeadlineExceeded(FleetError, TimeoutError):
    """No complete answer arrived before the request's deadline."""


class NotConnected(FleetError):
    """The client is used outside ``async with FleetClient(...)``."""
