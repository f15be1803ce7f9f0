"""Per-key requests and tokens per minute against the real Redis: two gateway replicas
(two KeyRates over the shared limiter) count one tenant's requests together, and past the
limit answer 429 in OpenAI's shape with Retry-After, at once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from contracts.errors import ConfigError
from gateway.errors import OpenAIError
from gateway.key_rates import KeyRates
from providers.rate_limits import RateLimit, RedisRateLimiter
from providers.redis_client import RedisClient, connect_redis
from workers.settings import load_settings


@pytest.fixture
async def key(redis: RedisClient) -> AsyncIterator[str]:
    key = f"gateway:test-{uuid.uuid4().hex[:12]}:acme"
    yield key
    await redis.delete(*RedisRateLimiter(redis, key, RateLimit()).redis_keys)


async def _refused(rates: KeyRates, tokens: int = 0) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        await rates.charge("acme", tokens)
    return caught.value


@pytest.mark.redis
async def test_two_replicas_share_a_keys_requests_per_minute(redis: RedisClient, key: str) -> None:
    limit = RateLimit(requests_per_minute=3)
    one, other = (KeyRates({"acme": RedisRateLimiter(redis, key, limit)}) for _ in range(2))
    await one.charge("acme", 0)
    await other.charge("acme", 0)
    await one.charge("acme", 0)
    refused = await _refused(other)
    await other.charge("globex", 0)  # a tenant without a limit has none
    assert refused.status == 429
    assert 59 <= int(refused.headers["retry-after"]) <= 60
    assert 58_000 < int(refused.headers["retry-after-ms"]) <= 60_000
    body = msgspec.json.decode(refused.body())["error"]
    assert body["code"] == "rate_limit_exceeded"
    assert body["type"] == "rate_limit_error"
    assert "3 requests per minute" in body["message"]


@pytest.mark.redis
async def test_tokens_per_minute_count_the_estimate(redis: RedisClient, key: str) -> None:
    rates = KeyRates({"acme": RedisRateLimiter(redis, key, RateLimit(tokens_per_minute=100))})
    await rates.charge("acme", 60)
    over = await _refused(rates, 50)  # 60 + 50 > 100
    never = await _refused(rates, 101)  # more than the whole budget: no wait would do
    await rates.charge("acme", 40)
    assert over.status == 429
    assert "100 tokens per minute" in over.message
    assert (never.status, never.code) == (400, "tokens_over_limit")
    assert "retry-after" not in never.headers


async def test_a_redis_it_cannot_reach_is_503_not_a_free_pass() -> None:
    unreachable = connect_redis("redis://127.0.0.1:1")
    try:
        limiter = RedisRateLimiter(
            unreachable, "gateway:test:acme", RateLimit(requests_per_minute=1)
        )
        refused = await _refused(KeyRates({"acme": limiter}))
    finally:
        await unreachable.aclose()
    assert (refused.status, refused.code) == (503, "rate_limits_unavailable")


def test_the_settings_hold_a_limit_per_tenant_with_a_key(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(
        '[gateway]\napi_keys = { acme = "sk-acme" }\n'
        "[gateway.rate_limits.acme]\nrequests_per_minute = 60\ntokens_per_minute = 90000\n"
    )
    limit = load_settings(path).gateway.rate_limits["acme"]
    assert (limit.requests_per_minute, limit.tokens_per_minute) == (60, 90_000)
    path.write_text(
        '[gateway]\napi_keys = { acme = "sk-acme" }\n'
        "[gateway.rate_limits.globex]\nrequests_per_minute = 60\n"
    )
    with pytest.raises(ConfigError, match="globex"):
        load_settings(path)
