"""call_with_retry and stream_with_retry: what is retried, how long they wait, what they
never hide."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import msgspec
import pytest

from contracts.errors import ErrorCode
from providers.call_retry import CallRetryPolicy, call_with_retry, stream_with_retry
from providers.circuit import CircuitOpenError
from providers.errors import ProviderError
from tests.unit.providers import FakeSleep


def err(code: ErrorCode, retry_after_s: float | None = None) -> ProviderError:
    return ProviderError(code, "p.call", "boom", retry_after_s=retry_after_s)


@pytest.mark.parametrize("code", [ErrorCode.RATE_LIMIT, ErrorCode.TIMEOUT, ErrorCode.PROVIDER_DOWN])
async def test_retryable_codes_are_retried(code: ErrorCode) -> None:
    calls: list[int] = []

    async def op() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise err(code)
        return "ok"

    sleep = FakeSleep()
    assert await call_with_retry(op, CallRetryPolicy(max_attempts=3), sleep) == "ok"
    assert len(calls) == 3
    assert len(sleep.delays) == 2


@pytest.mark.parametrize(
    "code",
    [ErrorCode.AUTH, ErrorCode.INVALID_INPUT, ErrorCode.NOT_FOUND, ErrorCode.BUDGET_EXHAUSTED],
)
async def test_final_codes_are_not_retried(code: ErrorCode) -> None:
    calls: list[int] = []

    async def op() -> str:
        calls.append(1)
        raise err(code)

    sleep = FakeSleep()
    with pytest.raises(ProviderError) as info:
        await call_with_retry(op, CallRetryPolicy(max_attempts=5), sleep)
    assert info.value.code is code
    assert len(calls) == 1
    assert sleep.delays == []


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    calls: list[int] = []

    async def op() -> str:
        calls.append(1)
        raise err(ErrorCode.PROVIDER_DOWN)

    with pytest.raises(ProviderError):
        await call_with_retry(op, CallRetryPolicy(max_attempts=4), FakeSleep())
    assert len(calls) == 4


async def test_exponential_backoff_with_full_jitter_is_capped() -> None:
    async def op() -> str:
        raise err(ErrorCode.PROVIDER_DOWN)

    policy = CallRetryPolicy(max_attempts=6, base_delay_s=1.0, max_delay_s=5.0)
    top = FakeSleep()
    with pytest.raises(ProviderError):
        await call_with_retry(op, policy, top, rng=lambda: 1.0)
    assert top.delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    half = FakeSleep()
    with pytest.raises(ProviderError):
        await call_with_retry(op, policy, half, rng=lambda: 0.5)
    assert half.delays == [0.5, 1.0, 2.0, 2.5, 2.5]
    fixed = FakeSleep()
    with pytest.raises(ProviderError):
        await call_with_retry(op, CallRetryPolicy(max_attempts=3, jitter="none"), fixed)
    assert fixed.delays == [0.5, 1.0]


async def test_retry_after_is_a_floor_for_the_wait() -> None:
    calls: list[int] = []

    async def op() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise err(ErrorCode.RATE_LIMIT, retry_after_s=4.0)
        if len(calls) == 2:
            raise err(ErrorCode.RATE_LIMIT, retry_after_s=0.01)
        return "ok"

    sleep = FakeSleep()
    policy = CallRetryPolicy(max_attempts=3, base_delay_s=1.0)
    assert await call_with_retry(op, policy, sleep, rng=lambda: 1.0) == "ok"
    # 4.0 beats the 1.0 backoff; the 2.0 backoff beats a 0.01 Retry-After.
    assert sleep.delays == [4.0, 2.0]


async def test_retry_after_longer_than_the_policy_allows_is_raised_at_once() -> None:
    async def op() -> str:
        raise err(ErrorCode.RATE_LIMIT, retry_after_s=3600)

    sleep = FakeSleep()
    with pytest.raises(ProviderError) as info:
        await call_with_retry(op, CallRetryPolicy(max_retry_after_s=60), sleep)
    assert info.value.retry_after_s == 3600
    assert sleep.delays == []


async def test_an_open_circuit_is_not_retried() -> None:
    calls: list[int] = []

    async def op() -> str:
        calls.append(1)
        raise CircuitOpenError(ErrorCode.PROVIDER_DOWN, "p.circuit", "open")

    with pytest.raises(CircuitOpenError):
        await call_with_retry(op, CallRetryPolicy(max_attempts=5), FakeSleep())
    assert len(calls) == 1


async def test_per_attempt_timeout_becomes_a_timeout_error_and_is_retried() -> None:
    calls: list[int] = []

    async def op() -> str:
        calls.append(1)
        if len(calls) == 1:
            await asyncio.sleep(10)
        return "ok"

    sleep = FakeSleep()
    assert await call_with_retry(op, CallRetryPolicy(), sleep, timeout_s=0.01) == "ok"
    assert len(calls) == 2

    async def slow() -> str:
        await asyncio.sleep(10)
        return "never"

    with pytest.raises(ProviderError) as info:
        await call_with_retry(
            slow, CallRetryPolicy(max_attempts=1), sleep, timeout_s=0.01, name="x.y"
        )
    assert info.value.code is ErrorCode.TIMEOUT
    assert info.value.op == "x.y"


async def test_cancellation_is_never_swallowed() -> None:
    started = asyncio.Event()

    async def op() -> str:
        started.set()
        await asyncio.sleep(10)
        return "never"

    task = asyncio.create_task(call_with_retry(op, CallRetryPolicy(), timeout_s=5))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancellation_during_the_backoff_sleep_propagates() -> None:
    async def op() -> str:
        raise err(ErrorCode.PROVIDER_DOWN)

    task = asyncio.create_task(
        call_with_retry(op, CallRetryPolicy(max_attempts=3, base_delay_s=10, jitter="none"))
    )
    await asyncio.sleep(0.01)  # now in the real asyncio.sleep between attempts
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_stream_is_retried_only_before_its_first_item() -> None:
    attempts: list[int] = []

    async def open_stream() -> AsyncGenerator[str, None]:
        attempts.append(1)
        if len(attempts) == 1:
            raise err(ErrorCode.PROVIDER_DOWN)
        yield "a"
        if len(attempts) == 2:
            raise err(ErrorCode.PROVIDER_DOWN)
        yield "b"

    got: list[str] = []

    async def drain() -> None:
        async for item in stream_with_retry(
            open_stream, CallRetryPolicy(max_attempts=5), FakeSleep()
        ):
            got.append(item)

    with pytest.raises(ProviderError):
        await drain()
    assert got == ["a"]  # never "a" twice
    assert len(attempts) == 2


async def test_stream_success_after_a_failed_open() -> None:
    attempts: list[int] = []

    async def open_stream() -> AsyncGenerator[str, None]:
        attempts.append(1)
        if len(attempts) < 3:
            raise err(ErrorCode.RATE_LIMIT, retry_after_s=2)
        yield "a"
        yield "b"

    sleep = FakeSleep()
    got = [i async for i in stream_with_retry(open_stream, CallRetryPolicy(max_attempts=3), sleep)]
    assert got == ["a", "b"]
    assert sleep.delays == [2, 2]


async def test_closing_a_retried_stream_closes_the_inner_one() -> None:
    closed: list[bool] = []

    async def open_stream() -> AsyncGenerator[str, None]:
        try:
            yield "a"
            yield "b"
        finally:
            closed.append(True)

    outer = stream_with_retry(open_stream, CallRetryPolicy(), FakeSleep())
    assert await anext(outer) == "a"
    await outer.aclose()
    assert closed == [True]


def test_policy_is_validated_as_config() -> None:
    with pytest.raises(msgspec.ValidationError, match="max_attempts"):
        msgspec.convert({"max_attempts": 0}, CallRetryPolicy)
    with pytest.raises(msgspec.ValidationError, match="jitter"):
        msgspec.convert({"jitter": "equal"}, CallRetryPolicy)
