"""Retries for provider calls: exponential backoff with full jitter, honouring Retry-After.

Only retryable ProviderErrors (rate_limit, timeout, provider_down) are retried; a stream is
retried only while it has yielded nothing, so a caller never sees text twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Annotated, Literal, TypeVar

import msgspec

from contracts.errors import ErrorCode
from providers.circuit import CircuitOpenError
from providers.errors import ProviderError

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

log = logging.getLogger(__name__)


class CallRetryPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_attempts: Annotated[int, msgspec.Meta(ge=1)] = 3
    base_delay_s: Annotated[float, msgspec.Meta(ge=0)] = 0.5
    max_delay_s: Annotated[float, msgspec.Meta(ge=0)] = 20.0
    jitter: Literal["full", "none"] = "full"
    # A server asking for a longer pause than this gets no in-process wait: the error goes
    # up with its retry_after_s so the worker can park the job on a delayed retry topic
    # instead of holding a slot idle.
    max_retry_after_s: Annotated[float, msgspec.Meta(ge=0)] = 60.0

    def backoff_s(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        """The pause before retry number ``retry`` (0 for the first retry)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2.0**retry))
        return ceiling * rng() if self.jitter == "full" else ceiling


def _delay_or_raise(
    exc: ProviderError, policy: CallRetryPolicy, retry: int, rng: Callable[[], float]
) -> float:
    """How long to wait before the next attempt, or re-raise when it must not be retried."""
    if not exc.retryable or isinstance(exc, CircuitOpenError) or retry + 1 >= policy.max_attempts:
        raise exc
    delay = policy.backoff_s(retry, rng)
    if exc.retry_after_s is not None:
        if exc.retry_after_s > policy.max_retry_after_s:
            raise exc
        delay = max(delay, exc.retry_after_s)
    return delay


async def with_timeout(op: Callable[[], Awaitable[T]], timeout_s: float | None, name: str) -> T:
    """Await ``op()``; past ``timeout_s`` cancel it and raise ProviderError(timeout)."""
    if timeout_s is None:
        return await op()
    try:
        async with asyncio.timeout(timeout_s):
            return await op()
    except TimeoutError as exc:
        # asyncio.timeout only turns its own cancellation into TimeoutError; a cancel from
        # outside still arrives as CancelledError and is not caught here.
        raise ProviderError(ErrorCode.TIMEOUT, name, f"no answer within {timeout_s:g} s") from exc


async def call_with_retry(
    op: Callable[[], Awaitable[T]],
    policy: CallRetryPolicy,
    sleep: Sleep = asyncio.sleep,
    *,
    timeout_s: float | None = None,
    name: str = "provider.call",
    rng: Callable[[], float] = random.random,
) -> T:
    """Await ``op()`` until it succeeds, retrying retryable ProviderErrors per ``policy``.

    ``timeout_s`` bounds each attempt (not the whole sequence) and fails it as ``timeout``.
    """
    retry = 0
    while True:
        try:
            return await with_timeout(op, timeout_s, name)
        except ProviderError as exc:
            delay = _delay_or_raise(exc, policy, retry, rng)
            log.warning(
                "%s failed, retry %d/%d in %.2f s: %s",
                name,
                retry + 1,
                policy.max_attempts - 1,
                delay,
                exc,
            )
        await sleep(delay)
        retry += 1


async def stream_with_retry(
    open_stream: Callable[[], AsyncGenerator[T, None]],
    policy: CallRetryPolicy,
    sleep: Sleep = asyncio.sleep,
    *,
    name: str = "provider.stream",
    rng: Callable[[], float] = random.random,
) -> AsyncGenerator[T, None]:
    """Yield from ``open_stream()``; retry a retryable failure only if nothing was yielded
    yet (after the first item, a retry would repeat text the caller already has)."""
    retry = 0
    while True:
        yielded = False
        try:
            async with aclosing(open_stream()) as stream:
                async for item in stream:
                    yielded = True
                    yield item
            return
        except ProviderError as exc:
            if yielded:
                raise
            delay = _delay_or_raise(exc, policy, retry, rng)
            log.warning(
                "%s failed before its first item, retry %d/%d in %.2f s: %s",
                name,
                retry + 1,
                policy.max_attempts - 1,
                delay,
                exc,
            )
        await sleep(delay)
        retry += 1
