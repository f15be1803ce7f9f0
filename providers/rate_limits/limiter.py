"""Requests-per-minute and tokens-per-minute limits shared by every worker replica through Redis.

Each decision is one Lua script run on the Redis server, timed by the server's own clock.
"""

from __future__ import annotations

import asyncio
from typing import Final

import msgspec

from contracts.errors import ErrorCode
from providers.errors import ProviderError
from providers.redis_client import RedisClient

_OP: Final = "ratelimit.acquire"
_US_PER_S: Final = 1_000_000
_NO_LIMIT: Final = -1

# A sliding-window log: the script drops entries older than the window, then admits the
# request only if the entries left plus this one fit the budgets. Entries are scored by the
# server's TIME in microseconds, so replicas with skewed clocks see one timeline. Token entries
# carry their count in the member ("seq:tokens"); a running sum in the meta hash keeps each
# decision O(log n) instead of re-adding the whole log.
#
# KEYS: 1 request log (zset), 2 token log (zset), 3 meta (hash: seq, used)
# ARGV: 1 window in microseconds, then the script's own arguments
_PRELUDE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local cutoff = now - window
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
local used
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cutoff)
if #expired > 0 then
  local freed = 0
  for _, member in ipairs(expired) do
    freed = freed + tonumber(string.match(member, '(%d+)$'))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
  used = redis.call('HINCRBY', KEYS[3], 'used', -freed)
else
  used = tonumber(redis.call('HGET', KEYS[3], 'used') or '0')
end
-- the token log can expire on its own while request-only grants keep the meta hash alive
if used ~= 0 and redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[3], 'used', 0)
  used = 0
end
local ttl_ms = math.ceil(window / 1000)
local function charge(tokens)
  local seq = redis.call('HINCRBY', KEYS[3], 'seq', 1)
  redis.call('ZADD', KEYS[2], now, seq .. ':' .. tokens)
  redis.call('HINCRBY', KEYS[3], 'used', tokens)
  redis.call('PEXPIRE', KEYS[2], ttl_ms)
  return seq
end
"""

# ARGV: 2 request budget per window (-1: none), 3 token budget per window (-1: none), 4 tokens
_ACQUIRE: Final = (
    _PRELUDE
    + """
local req_budget = tonumber(ARGV[2])
local tok_budget = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local wait = 0
if req_budget >= 0 then
  local count = redis.call('ZCARD', KEYS[1])
  if count >= req_budget then
    -- this request fits once the (count - budget + 1)-th oldest entry has left the window
    local idx = count - req_budget
    local entry = redis.call('ZRANGE', KEYS[1], idx, idx, 'WITHSCORES')
    wait = tonumber(entry[2]) + window - now
  end
end
if tok_budget >= 0 and used + tokens > tok_budget then
  local need = used + tokens - tok_budget
  local freed = 0
  local until_free = window
  local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    freed = freed + tonumber(string.match(entries[i], '(%d+)$'))
    if freed >= need then
      until_free = tonumber(entries[i + 1]) + window - now
      break
    end
  end
  wait = math.max(wait, until_free)
end
if wait > 0 then
  return {0, wait, now}
end
local seq
if tokens > 0 and tok_budget >= 0 then
  seq = charge(tokens)
else
  seq = redis.call('HINCRBY', KEYS[3], 'seq', 1)
end
if req_budget >= 0 then
  redis.call('ZADD', KEYS[1], now, seq)
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
end
redis.call('PEXPIRE', KEYS[3], ttl_ms)
return {1, 0, now}
"""
)

# ARGV: 2 tokens
_RECORD: Final = (
    _PRELUDE
    + """
charge(tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[3], ttl_ms)
return now
"""
)


class RateLimit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A provider's limits. ``window_s`` below 60 enforces the same rate over shorter sliding
    windows (budget scaled by ``window_s / 60``), which spreads a minute's budget instead of
    spending it in one burst, as providers that quantise their limits per second expect."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    window_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.window_s <= 60:
            raise ValueError(f"window_s must be in (0, 60], got {self.window_s}")
        for field, value in (
            ("requests_per_minute", self.requests_per_minute),
            ("tokens_per_minute", self.tokens_per_minute),
        ):
            if value is not None and _per_window(value, self.window_s) < 1:
                raise ValueError(
                    f"{field}={value} allows less than one per {self.window_s}s window; "
                    "expected a positive limit or a longer window"
                )

    @property
    def requests_per_window(self) -> int | None:
        rpm = self.requests_per_minute
        return None if rpm is None else _per_window(rpm, self.window_s)

    @property
    def tokens_per_window(self) -> int | None:
        tpm = self.tokens_per_minute
        return None if tpm is None else _per_window(tpm, self.window_s)


def _per_window(per_minute: int, window_s: float) -> int:
    # Rounding down keeps every minute within the stated limit.
    return int(per_minute * window_s / 60)


class RateDecision(msgspec.Struct, frozen=True):
    """One answer of the shared limiter, with the Redis server time it was made at."""

    allowed: bool
    wait_s: float
    server_time_us: int


class RedisRateLimiter:
    """Admits requests against a :class:`RateLimit` shared by every process using ``key``."""

    def __init__(self, redis: RedisClient, key: str, limit: RateLimit) -> None:
        if not key:
            raise ValueError("a rate limiter needs a non-empty key")
        self.key = key
        self.limit = limit
        # The braces make the key a Redis Cluster hash tag, so the script's keys share a slot.
        base = f"fleet:ratelimit:{{{key}}}"
        self._keys = [f"{base}:req", f"{base}:tok", f"{base}:meta"]
        self._window_us = round(limit.window_s * _US_PER_S)
        self._acquire = redis.register_script(_ACQUIRE)
        self._record = redis.register_script(_RECORD)

    @property
    def redis_keys(self) -> tuple[str, ...]:
        return tuple(self._keys)

    async def acquire(self, tokens: int = 0, *, max_wait_s: float | None = None) -> None:
        """Wait until one request of ``tokens`` (estimated) tokens fits the limits.

        Raises ProviderError(RATE_LIMIT) when the wait would run past ``max_wait_s``, and
        ProviderError(INVALID_INPUT) when ``tokens`` could never fit the token budget.
        """
        self._check_tokens(tokens)
        if self.limit.requests_per_minute is None and self.limit.tokens_per_minute is None:
            return
        loop = asyncio.get_running_loop()
        deadline = None if max_wait_s is None else loop.time() + max_wait_s
        while True:
            decision = await self.try_acquire(tokens)
            if decision.allowed:
                return
            if deadline is not None and loop.time() + decision.wait_s > deadline:
                raise ProviderError(
                    ErrorCode.RATE_LIMIT,
                    _OP,
                    f"limit {self.key!r} is full for {decision.wait_s:.3f}s, "
                    f"longer than the {max_wait_s}s allowed to wait",
                    retry_after_s=decision.wait_s,
                )
            await asyncio.sleep(decision.wait_s)

    async def try_acquire(self, tokens: int = 0) -> RateDecision:
        """Ask once: admit and charge now, or say how long until this request could fit."""
        self._check_tokens(tokens)
        args = [
            self._window_us,
            _or_no_limit(self.limit.requests_per_window),
            _or_no_limit(self.limit.tokens_per_window),
            tokens,
        ]
        allowed, wait_us, now_us = await self._acquire(keys=self._keys, args=args)
        return RateDecision(bool(allowed), int(wait_us) / _US_PER_S, int(now_us))

    async def record_tokens(self, tokens: int) -> None:
        """Charge tokens known only after the call (completion tokens) to the token budget.

        The charge is taken even if it overdraws the budget: the tokens were spent, so later
        requests wait until they leave the window.
        """
        if tokens < 0:
            raise ProviderError(ErrorCode.INVALID_INPUT, _OP, f"cannot record {tokens} tokens")
        if tokens == 0 or self.limit.tokens_per_minute is None:
            return
        await self._record(keys=self._keys, args=[self._window_us, tokens])

    def _check_tokens(self, tokens: int) -> None:
        if tokens < 0:
            raise ProviderError(
                ErrorCode.INVALID_INPUT, _OP, f"a request cannot ask for {tokens} tokens"
            )
        budget = self.limit.tokens_per_window
        if budget is not None and tokens > budget:
            raise ProviderError(
                ErrorCode.INVALID_INPUT,
                _OP,
                f"a request of {tokens} tokens can never fit limit {self.key!r}: "
                f"its budget is {budget} tokens per {self.limit.window_s:g}s",
            )


def _or_no_limit(budget: int | None) -> int:
    return _NO_LIMIT if budget is None else budget
