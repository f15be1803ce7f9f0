"""Every Lua script the fleet runs touches keys of one Redis Cluster slot: each key family
carries a hash tag, so the scripts run on a cluster as on one Redis (no CROSSSLOT)."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.crc import key_slot

from providers.memory.redis_memory import RedisMemory, RedisMemoryConfig
from providers.rate_limits.limiter import RateLimit, RedisRateLimiter
from workers.budgets import Budget, Budgets
from workers.idempotency import JobKeys, job_ref
from workers.tenant_leases import session_key, tenant_key


def _slots(keys: list[str]) -> set[int]:
    return {key_slot(key.encode()) for key in keys}


def test_one_jobs_ledger_keys_share_a_slot() -> None:
    keys = list(JobKeys.of("prod", job_ref("generate", "acme", "req-1")))
    assert len(keys) == 6
    assert len(_slots(keys)) == 1


def test_a_sessions_history_and_turn_markers_share_a_slot() -> None:
    memory = RedisMemory(RedisMemoryConfig(), aioredis.Redis())
    history = memory.key("acme", "chat-42")
    assert len(_slots([history, f"{history}:turn:req-1"])) == 1


def test_a_rate_limits_keys_share_a_slot() -> None:
    limiter = RedisRateLimiter(aioredis.Redis(), "chat:openai", RateLimit(requests_per_minute=60))
    assert len(_slots(limiter._keys)) == 1


def test_a_tenants_lease_sets_share_a_slot() -> None:
    keys = [tenant_key("prod", "acme"), session_key("prod", "acme", "chat-42")]
    assert len(_slots(keys)) == 1


def test_a_budgets_keys_share_a_slot() -> None:
    book = Budgets(aioredis.Redis(), "prod", {"acme": Budget(usd=1.0)})
    assert len(_slots(list(book.keys("acme", "2026-12-07")))) == 1
