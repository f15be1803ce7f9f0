"""Spending limits per tenant and period, held across all replicas in Redis: a job reserves
its worst case before it runs, and settles to what it cost (or releases the hold) when it ends.

Per tenant and period (a calendar day or month in UTC) one hash holds the micro-dollars
spent, those reserved, and each reservation's amount; a sorted set holds the reservations by
the time they lapse, so one whose worker died stops counting then. Both keys share a hash tag
(the tenant and period), so one script sees both on a Redis Cluster. Every change is that one
script: it sweeps lapsed holds, then reserves (only if spent + reserved + this fits the
limit), settles or releases, as one step no other replica can interleave
(docs/decisions/0042-budgets.md).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final, Literal, NamedTuple

import msgspec

from providers.redis_client import RedisClient
from workers.idempotency import JobScript, ScriptPipeline

Period = Literal["day", "month"]
_MICRO: Final = 1_000_000

# K = 2 per call: state (hash: spent, reserved, and "r:<member>" = each hold's amount), holds
# (sorted set: member by the server time, in ms, its hold lapses). A = 6 per call: op
# ("reserve" | "settle" | "release"), member, micro-dollars (reserve: the worst case; settle:
# the cost), the limit in micro-dollars, when both keys expire (unix s), how long a hold lasts
# (ms). Per call: 1, or 0 for a reservation that does not fit.
_BOOK: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local function unhold(state, member)
  local held = redis.call('HGET', state, 'r:' .. member)
  if held then
    redis.call('HINCRBY', state, 'reserved', -tonumber(held))
    redis.call('HDEL', state, 'r:' .. member)
  end
end
for i = 1, #KEYS / 2 do
  local state, holds = KEYS[2 * i - 1], KEYS[2 * i]
  local a = (i - 1) * 6
  local op, member, amount = ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  local limit, expire_at, hold_ms = tonumber(ARGV[a + 4]), ARGV[a + 5], tonumber(ARGV[a + 6])
  -- holds whose worker died (or ran past the hold) stop counting
  local lapsed = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  for _, gone in ipairs(lapsed) do
    unhold(state, gone)
  end
  if #lapsed > 0 then
    redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)
  end
  out[i] = 1
  if op == 'reserve' then
    local spent = tonumber(redis.call('HGET', state, 'spent') or '0')
    local reserved = tonumber(redis.call('HGET', state, 'reserved') or '0')
    if redis.call('HEXISTS', state, 'r:' .. member) == 1 then
      -- this run holds already (a repeated call): one hold per run
    elseif spent + reserved + amount > limit then
      out[i] = 0
    else
      redis.call('HSET', state, 'r:' .. member, amount)
      redis.call('HINCRBY', state, 'reserved', amount)
      redis.call('ZADD', holds, now + hold_ms, member)
    end
  else
    unhold(state, member)
    redis.call('ZREM', holds, member)
    if op == 'settle' then
      redis.call('HINCRBY', state, 'spent', amount)
    end
  end
  redis.call('EXPIREAT', state, expire_at)
  redis.call('EXPIREAT', holds, expire_at)
end
return out
"""


class Budget(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A tenant's spending limit (`[budgets.<tenant>]`), in US dollars at the model
    catalogue's prices, per calendar day or month in UTC."""

    usd: Annotated[float, msgspec.Meta(gt=0)]
    period: Period = "day"


class Window(NamedTuple):
    """One period of a budget: its name (``2026-12-07``, ``2026-12``) and its end."""

    label: str
    ends: datetime


def window(period: Period, now: datetime) -> Window:
    """The calendar ``period`` (UTC) that ``now`` falls in."""
    now = now.astimezone(UTC)
    if period == "day":
        start = datetime(now.year, now.month, now.day, tzinfo=UTC)
        return Window(start.strftime("%Y-%m-%d"), start + timedelta(days=1))
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return Window(now.strftime("%Y-%m"), datetime(year, month, 1, tzinfo=UTC))


class Hold(NamedTuple):
    """One job's reservation: where it is kept, so that its end settles there even when
    the period turned meanwhile."""

    keys: tuple[str, str]
    member: str
    limit: int  # micro-dollars
    expire_at: int  # unix seconds


class Standing(NamedTuple):
    """What a tenant's budget stands at in one period (`fleet budgets`), in US dollars."""

    tenant: str
    period: str
    limit_usd: float
    spent_usd: float
    reserved_usd: float
    holds: int  # reservations of jobs running now (or whose worker died, until they lapse)


class Budgets:
    """The tenants' budgets of one namespace, kept in Redis. Only tenants that have one
    cost anything here: the caller asks ``of(tenant)`` first."""

    def __init__(
        self,
        redis: RedisClient,
        namespace: str,
        limits: dict[str, Budget],
        *,
        hold_s: float = 900.0,
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._limits = limits
        self._hold_ms = int(hold_s * 1000)
        self._scripts = ScriptPipeline(redis)
        self._book = JobScript(redis, _BOOK)

    def of(self, tenant: str) -> Budget | None:
        return self._limits.get(tenant)

    def keys(self, tenant: str, label: str) -> tuple[str, str]:
        base = f"fleet:{self._namespace}:budget:{{{tenant}/{label}}}"
        return f"{base}:state", f"{base}:holds"

    async def reserve(
        self, tenant: str, budget: Budget, member: str, usd: float, now: datetime | None = None
    ) -> Hold | None:
        """Hold ``usd`` (rounded up to a micro-dollar) of ``tenant``'s budget for
        ``member`` (unique to the job's run); None when it does not fit what is left."""
        period = window(budget.period, now or datetime.now(UTC))
        # a day past its end: `fleet budgets` still reads a period that just ended
        expire_at = int((period.ends + timedelta(days=1)).timestamp())
        hold = Hold(self.keys(tenant, period.label), member, _micro(budget.usd), expire_at)
        fits = await self._call("reserve", hold, math.ceil(usd * _MICRO))
        return hold if fits else None

    async def settle(self, hold: Hold, usd: float) -> None:
        """The job ended having cost ``usd``: spent, and its hold let go."""
        await self._call("settle", hold, _micro(usd))

    async def release(self, hold: Hold) -> None:
        """The job ended without a cost to count (an error, a cancel, a retry): its hold
        let go."""
        await self._call("release", hold, 0)

    async def _call(self, op: str, hold: Hold, amount: int) -> bool:
        args = (op, hold.member, amount, hold.limit, hold.expire_at, self._hold_ms)
        return bool(await self._scripts.call(self._book, hold.keys, args))

    async def standing(self, tenant: str, now: datetime | None = None) -> Standing | None:
        """``tenant``'s budget in the current period; None when it has none. Lapsed holds
        still count here until the next script call sweeps them."""
        budget = self.of(tenant)
        if budget is None:
            return None
        period = window(budget.period, now or datetime.now(UTC))
        state, _ = self.keys(tenant, period.label)
        fields = {_text(k): _text(v) for k, v in (await self._redis.hgetall(state)).items()}
        holds = sum(1 for field in fields if field.startswith("r:"))
        return Standing(
            tenant=tenant,
            period=period.label,
            limit_usd=budget.usd,
            spent_usd=int(fields.get("spent", 0)) / _MICRO,
            reserved_usd=int(fields.get("reserved", 0)) / _MICRO,
            holds=holds,
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _micro(usd: float) -> int:
    return round(usd * _MICRO)
