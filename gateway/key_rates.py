"""Per-key requests and tokens per minute, counted by every gateway replica together: each
tenant's limit is the workers' shared Redis limiter (providers/rate_limits/limiter.py's
RedisRateLimiter), which ``fleet gateway`` builds and hands in, since the gateway may not
import ``providers/``. A request past its key's limit is answered at once with 429 and
``Retry-After`` (when the limiter says it would fit), never held until it does."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Protocol

from redis.exceptions import RedisError

from gateway.errors import OpenAIError

log = logging.getLogger(__name__)


class RateDecision(Protocol):
    @property
    def allowed(self) -> bool: ...

    @property
    def wait_s(self) -> float: ...  # until the request would fit, when not allowed


class RateBudget(Protocol):
    @property
    def requests_per_minute(self) -> int | None: ...

    @property
    def tokens_per_minute(self) -> int | None: ...

    @property
    def tokens_per_window(self) -> int | None: ...

    @property
    def window_s(self) -> float: ...


class SharedRate(Protocol):
    """One key's limit, shared through Redis: RedisRateLimiter is one."""

    @property
    def limit(self) -> RateBudget: ...

    async def try_acquire(self, tokens: int = 0) -> RateDecision: ...


class KeyRates:
    def __init__(self, rates: Mapping[str, SharedRate]) -> None:
        """``rates``: the limit of each tenant that has one (the others have none)."""
        self._rates = dict(rates)

    async def charge(self, tenant: str, tokens: int) -> None:
        """Count one request of ``tokens`` estimated tokens against ``tenant``'s limit, or
        raise OpenAIError: 429 past it, 400 when the request could never fit it."""
        rate = self._rates.get(tenant)
        if rate is None:
            return
        limit = rate.limit
        budget = limit.tokens_per_window
        if budget is not None and tokens > budget:
            # The limiter would refuse it for ever: no Retry-After could be honest.
            raise OpenAIError(
                400,
                f"this request's {tokens} estimated tokens (its prompt and max_tokens) can "
                f"never fit this key's limit of {budget} tokens per {limit.window_s:g} s: "
                "send less, or lower max_tokens",
                code="tokens_over_limit",
            )
        try:
            decision = await rate.try_acquire(tokens)
        except RedisError as exc:
            # Refused, not let through unmetered: the limit is what the key was sold.
            log.warning("the keys' rate limits cannot be checked: %s", exc)
            raise OpenAIError(
                503,
                "this key's rate limit cannot be checked; try again later",
                code="rate_limits_unavailable",
            ) from exc
        if not decision.allowed:
            raise _rate_limited(tenant, limit, decision.wait_s)


def _rate_limited(tenant: str, limit: RateBudget, wait_s: float) -> OpenAIError:
    per_minute = [
        f"{value} {unit} per minute"
        for value, unit in (
            (limit.requests_per_minute, "requests"),
            (limit.tokens_per_minute, "tokens"),
        )
        if value is not None
    ]
    return OpenAIError(
        429,
        f"rate limit reached for tenant {tenant!r} ({', '.join(per_minute)}): "
        f"try again in {wait_s:.3f} s",
        code="rate_limit_exceeded",
        # Retry-After in whole seconds, rounded up; OpenAI's SDKs read the exact wait from
        # retry-after-ms first.
        headers={
            "retry-after": str(max(1, math.ceil(wait_s))),
            "retry-after-ms": str(max(1, math.ceil(wait_s * 1000))),
        },
    )
