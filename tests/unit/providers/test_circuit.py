"""The circuit breaker's states, with a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from contracts.errors import ErrorCode
from providers.circuit import CircuitBreaker, CircuitOpenError, CircuitSettings, CircuitState
from providers.errors import ProviderError
from tests.unit.providers import FakeClock

DOWN = ProviderError(ErrorCode.PROVIDER_DOWN, "p.chat", "503")
AUTH = ProviderError(ErrorCode.AUTH, "p.chat", "401")


def state(b: CircuitBreaker) -> CircuitState:
    """Read through a call: mypy would otherwise keep a narrowed state across awaits."""
    return b.state


def breaker(clock: FakeClock, threshold: int = 3, reset: float = 10.0) -> CircuitBreaker:
    settings = CircuitSettings(failure_threshold=threshold, reset_timeout_s=reset)
    return CircuitBreaker("openai", settings, clock=clock)


async def fail(b: CircuitBreaker, exc: ProviderError = DOWN) -> None:
    async def op() -> None:
        raise exc

    with pytest.raises(ProviderError):
        await b.call(op)


async def ok(b: CircuitBreaker) -> str:
    async def op() -> str:
        return "fine"

    return await b.call(op)


async def test_opens_after_n_consecutive_retryable_failures() -> None:
    b = breaker(FakeClock())
    await fail(b)
    await fail(b)
    assert state(b) is CircuitState.CLOSED
    await fail(b)
    assert state(b) is CircuitState.OPEN
    with pytest.raises(CircuitOpenError) as info:
        await ok(b)
    assert info.value.code is ErrorCode.PROVIDER_DOWN
    assert "'openai'" in str(info.value)
    assert info.value.retry_after_s == pytest.approx(10.0)


async def test_a_success_or_a_final_error_breaks_the_streak() -> None:
    b = breaker(FakeClock())
    await fail(b)
    await fail(b)
    assert await ok(b) == "fine"
    await fail(b)
    await fail(b)
    await fail(b, AUTH)  # the provider answered: it is up
    await fail(b)
    await fail(b)
    assert state(b) is CircuitState.CLOSED


async def test_half_open_lets_one_trial_through_and_closes_on_success() -> None:
    clock = FakeClock()
    b = breaker(clock, threshold=1)
    await fail(b)
    clock.advance(9.9)
    assert state(b) is CircuitState.OPEN
    clock.advance(0.1)
    assert state(b) is CircuitState.HALF_OPEN

    release = asyncio.Event()

    async def trial() -> str:
        await release.wait()
        return "back"

    task = asyncio.create_task(b.call(trial))
    await asyncio.sleep(0)
    with pytest.raises(CircuitOpenError):  # a second caller while the trial runs
        await ok(b)
    release.set()
    assert await task == "back"
    assert state(b) is CircuitState.CLOSED
    assert await ok(b) == "fine"


async def test_failed_trial_reopens_for_another_full_timeout() -> None:
    clock = FakeClock()
    b = breaker(clock, threshold=2)
    await fail(b)
    await fail(b)
    clock.advance(10)
    await fail(b)  # the trial
    assert state(b) is CircuitState.OPEN
    clock.advance(5)
    with pytest.raises(CircuitOpenError):
        await ok(b)
    clock.advance(5)
    assert await ok(b) == "fine"


async def test_a_cancelled_trial_frees_the_slot_without_a_verdict() -> None:
    clock = FakeClock()
    b = breaker(clock, threshold=1)
    await fail(b)
    clock.advance(10)

    async def hang() -> None:
        await asyncio.sleep(10)

    task = asyncio.create_task(b.call(hang))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert state(b) is CircuitState.HALF_OPEN
    assert await ok(b) == "fine"
    assert state(b) is CircuitState.CLOSED


def test_guard_records_outcomes_for_streams() -> None:
    b = breaker(FakeClock(), threshold=1)
    with b.guard():
        pass
    assert state(b) is CircuitState.CLOSED
    with pytest.raises(ProviderError), b.guard():
        raise DOWN
    assert state(b) is CircuitState.OPEN
    assert "open" in repr(b)
