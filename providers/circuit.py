"""A circuit breaker per provider: after repeated outages, fail fast instead of waiting.

closed -> open after N consecutive retryable failures; open -> half-open once
reset_timeout_s has passed, letting one trial call through; its outcome closes or reopens.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, TypeVar

import msgspec

from contracts.errors import ErrorCode
from providers.errors import ProviderError

T = TypeVar("T")

log = logging.getLogger(__name__)


class CircuitSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    failure_threshold: Annotated[int, msgspec.Meta(ge=1)] = 5
    reset_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpenError(ProviderError):
    """Raised without calling the provider. A subclass so retry loops can tell it apart:
    waiting a backoff step and asking again cannot help before the reset timeout."""


class CircuitBreaker:
    def __init__(
        self,
        provider: str,
        settings: CircuitSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self.settings = settings or CircuitSettings()
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.provider!r}, state={self.state.value})"

    @property
    def state(self) -> CircuitState:
        if self._state is CircuitState.OPEN and self._reset_due():
            return CircuitState.HALF_OPEN
        return self._state

    def _reset_due(self) -> bool:
        return self._clock() - self._opened_at >= self.settings.reset_timeout_s

    def before_call(self) -> None:
        """Admit a call or raise CircuitOpenError (provider_down) naming the provider."""
        if self._state is CircuitState.OPEN and self._reset_due():
            self._state = CircuitState.HALF_OPEN
            self._trial_in_flight = False
        if self._state is CircuitState.CLOSED:
            return
        if self._state is CircuitState.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return
        remaining = max(self.settings.reset_timeout_s - (self._clock() - self._opened_at), 0.0)
        raise CircuitOpenError(
            ErrorCode.PROVIDER_DOWN,
            f"{self.provider}.circuit",
            f"provider {self.provider!r} is failing; circuit open, next trial in {remaining:.1f} s",
            retry_after_s=remaining,
        )

    def record_success(self) -> None:
        if self._state is not CircuitState.CLOSED:
            log.info("circuit for %s closed again", self.provider)
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._trial_in_flight = False

    def record_failure(self, exc: BaseException) -> None:
        """Count a failure if it says the provider is unwell; an auth or input error proves
        it answered, which is as good as a success for the circuit."""
        if not (isinstance(exc, ProviderError) and exc.retryable):
            self.record_success()
            return
        if self._state is CircuitState.HALF_OPEN:
            self._open()
            return
        self._failures += 1
        if self._failures >= self.settings.failure_threshold:
            self._open()

    def release(self) -> None:
        """The call ended without telling us anything (cancelled, closed early)."""
        self._trial_in_flight = False

    def _open(self) -> None:
        log.warning(
            "circuit for %s opened after %d consecutive failures", self.provider, self._failures
        )
        self._state = CircuitState.OPEN
        self._opened_at = self._clock()
        self._trial_in_flight = False

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Wrap one call (or one stream) and record its outcome."""
        self.before_call()
        try:
            yield
        except ProviderError as exc:
            self.record_failure(exc)
            raise
        except BaseException:
            self.release()
            raise
        self.record_success()

    async def call(self, op: Callable[[], Awaitable[T]]) -> T:
        with self.guard():
            return await op()
