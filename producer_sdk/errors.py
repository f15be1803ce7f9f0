"""Errors the SDK raises to its caller."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, ParamSpec, TypeVar

from aiokafka.errors import KafkaError

from contracts.errors import ContractError, ErrorCode, FleetError
from contracts.replies import ErrorReply
from transport.connection import passing


class FleetRequestError(FleetError):
    """The fleet answered a request with an error reply."""

    def __init__(self, reply: ErrorReply) -> None:
        super().__init__(f"request {reply.request_id} failed [{reply.code}]: {reply.message}")
        self.reply = reply
        self.code: ErrorCode = reply.code
        self.retryable = reply.retryable


class DeadlineExceeded(FleetError, TimeoutError):
    """No complete answer arrived before the request's deadline. ``chunks``: how many
    chunks of an answer had come (0: none, so no worker had started answering), and
    ``attempt`` the attempt they came from."""

    def __init__(
        self, kind: str, request_id: str, timeout_s: float, *, chunks: int, attempt: int | None
    ) -> None:
        if chunks == 0:
            what = (
                f"got no reply within {timeout_s:g}s: no worker had started answering it "
                "(it waited in a queue, or for a retry, or its worker stopped before "
                "answering)"
            )
        else:
            what = (
                f"got no complete answer within {timeout_s:g}s: the answer had begun "
                f"({chunks} chunk{'s' if chunks > 1 else ''} of attempt {attempt}) but did "
                "not finish"
            )
        super().__init__(f"{kind} request {request_id} {what}")
        self.request_id = request_id
        self.chunks = chunks
        self.attempt = attempt

    @property
    def started(self) -> bool:
        """Whether any of the answer had come."""
        return self.chunks > 0


class NotConnected(FleetError):
    """The client is used outside ``async with FleetClient(...)``."""


class RequestRefused(ContractError):
    """The SDK did not send a request the workers could not read (an id outside the fleet's
    alphabet) or the broker would not take (too large): nothing went out. ``reason`` says
    which (``schema`` or ``oversized``); ``code`` is the code a worker would answer with."""

    code = ErrorCode.INVALID_INPUT


class BrokerError(FleetError):
    """Kafka could not be reached, or did not take what the client sent. ``retryable``: the
    cause passes by itself (a broker away or restarting, a partition without a leader yet),
    so the same call may succeed later; a request sent again with the same id runs once.
    ``cause``: Kafka's own error, for logs."""

    def __init__(self, doing: str, cause: KafkaError) -> None:
        super().__init__(f"{doing}: {type(cause).__name__}: {cause}")
        self.cause = cause
        self.retryable = passing(cause)


@contextlib.contextmanager
def broker_errors(doing: str) -> Iterator[None]:
    """Kafka's errors raised inside the block, as ``BrokerError``s saying what the client
    was ``doing``: the SDK never raises aiokafka's own."""
    try:
        yield
    except KafkaError as exc:
        raise BrokerError(doing, exc) from exc


_P = ParamSpec("_P")
_T = TypeVar("_T")


def raises_broker_errors(
    doing: str,
) -> Callable[[Callable[_P, Awaitable[_T]]], Callable[_P, Coroutine[Any, Any, _T]]]:
    """A coroutine method whose Kafka errors reach its caller as ``BrokerError``s saying
    what the client was ``doing`` (``broker_errors`` around the whole call)."""

    def wrap(method: Callable[_P, Awaitable[_T]]) -> Callable[_P, Coroutine[Any, Any, _T]]:
        @functools.wraps(method)
        async def call(*args: _P.args, **kwargs: _P.kwargs) -> _T:
            with broker_errors(doing):
                return await method(*args, **kwargs)

        return call

    return wrap
