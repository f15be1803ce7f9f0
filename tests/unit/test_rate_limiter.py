"""The Redis rate limiter: budgets, waiting, token accounting, and limits shared by processes."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator

import pytest

from contracts import ConfigError, ErrorCode
from providers import ProviderError, parse_config
from providers.rate_limits.limiter import RateLimit, RedisRateLimiter
from providers.redis_client import RedisClient
from tests.conftest import REPO


@pytest.fixture
def key() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def cleanup(redis: RedisClient, key: str) -> AsyncIterator[None]:
    yield
    # The limiter's own keys, by name: a SCAN for them walks the whole keyspace of the
    # suite's Redis, seconds per test once other tests have filled it.
    await redis.delete(*RedisRateLimiter(redis, key, RateLimit()).redis_keys)


async def _server_time_us(redis: RedisClient) -> int:
    """The Redis server's clock in microseconds, as the limiter's decisions are timed."""
    seconds, microseconds = await redis.time()
    return seconds * 1_000_000 + microseconds


# --- the limit's own validation (no Redis) ---


@pytest.mark.parametrize(
    ("limit", "field"),
    [
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"tokens_per_minute": -5}, "tokens_per_minute"),
        ({"requests_per_minute": 30, "window_s": 1.0}, "requests_per_minute"),
        ({"window_s": 0.0}, "window_s"),
        ({"window_s": 61.0}, "window_s"),
    ],
)
def test_invalid_limits_name_the_field(limit: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        parse_config("ratelimit", limit, RateLimit)


def test_budget_scales_with_the_window() -> None:
    limit = RateLimit(requests_per_minute=600, tokens_per_minute=90_000, window_s=1.0)
    assert (limit.requests_per_window, limit.tokens_per_window) == (10, 1500)
    assert RateLimit(requests_per_minute=7).requests_per_window == 7


# --- against the real Redis ---


@pytest.mark.redis
@pytest.mark.redis_cluster
@pytest.mark.usefixtures("cleanup")
async def test_allows_the_budget_then_denies(redis: RedisClient, key: str) -> None:
    limiter = RedisRateLimiter(redis, key, RateLimit(requests_per_minute=3))
    decisions = [await limiter.try_acquire() for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    # The denied request fits when the first grant leaves the 60 s window.
    first, denied = decisions[0], decisions[3]
    expected_wait = (first.server_time_us + 60_000_000 - denied.server_time_us) / 1e6
    assert denied.wait_s == pytest.approx(expected_wait, abs=1e-6)
    assert 0 < denied.wait_s <= 60  # however long the four decisions took apart
    # Decisions are timed by the Redis server's clock.
    server_seconds, _ = await redis.time()
    assert abs(denied.server_time_us / 1e6 - server_seconds) < 5


@pytest.mark.redis
@pytest.mark.redis_cluster
@pytest.mark.usefixtures("cleanup")
async def test_keys_are_namespaced_and_expire(redis: RedisClient, key: str) -> None:
    limiter = RedisRateLimiter(redis, key, RateLimit(requests_per_minute=5, tokens_per_minute=600))
    await limiter.acquire(tokens=10)
    assert all(k.startswith(f"fleet:ratelimit:{{{key}}}:") for k in limiter.redis_keys)
    for redis_key in limiter.redis_keys:
        ttl_ms = await redis.pttl(redis_key)
        assert 0 < ttl_ms <= 60_000, redis_key


@pytest.mark.redis
@pytest.mark.redis_cluster
@pytest.mark.usefixtures("cleanup")
async def test_acquire_raises_rate_limit_past_max_wait(redis: RedisClient, key: str) -> None:
    limiter = RedisRateLimiter(redis, key, RateLimit(requests_per_minute=1))
    before = await _server_time_us(redis)
    await limiter.acquire(max_wait_s=0)
    with pytest.raises(ProviderError) as caught:
        await limiter.acquire(max_wait_s=0.05)
    after = await _server_time_us(redis)
    assert caught.value.code is ErrorCode.RATE_LIMIT
    assert caught.value.retryable
    assert caught.value.retry_after_s is not None
    # Until the grant (made after ``before``) leaves the window, from the denial (made
    # before ``after``): 60 s less the time between the two at most.
    assert (before + 60_000_000 - after) / 1e6 <= caught.value.retry_after_s <= 60


@pytest.mark.redis
@pytest.mark.redis_cluster
@pytest.mark.usefixtures("cleanup")
async def test_acquire_waits_until_the_window_frees(redis: RedisClient, key: str) -> None:
    # one request per half-second window
    limiter = RedisRateLimiter(redis, key, RateLimit(requests_per_minute=120, window_s=0.5))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await limiter.acquire()
    await limiter.acquire(max_wait_s=5)
    assert 0.45 <= loop.time() - started < 5


@pytest.mark.redis
@pytest.mark.redis_cluster
@pytest.mark.usefixtures("cleanup")
async def test_token_budget(redis: RedisClient, key: str) -> None:
    limiter = RedisRateLimiter(redis, key, RateLimit(tokens_per_minute=600))
    await limiter.acquire(400, max_wait_s=0)
    assert not (await limiter.try_acquire(300)).allowed
    assert (await limiter.try_acquire(200)).allowed  # exactly the budget
    assert not (await limiter.try_acquire(1)).allowed
    # Requests are not limited here: tokenless calls still pass.
    assert (await limiter.try_acquire(0)).allowed


@pytest.mark.redis
@pytest.mark.redis_cluster
@pytest.mark.usefixtures("cleanup")
async def test_recorded_tokens_hold_back_later_requests(redis: RedisClient, key: str) -> None:
    # 100 tokens per one-second window
    limiter = RedisRateLimiter(redis, key, RateLimit(tokens_per_minute=6000, window_s=1.0))
    await limiter.acquire(20)
    recorded = await _server_time_us(redis)  # the 150 tokens are charged after this
    await limiter.record_tokens(150)  # completion tokens overdraw the budget
    denied = await limiter.try_acquire(10)
    assert not denied.allowed
    # The request fits once the 150 tokens leave the window (the 20 leaving is not enough).
    assert (recorded + 1_000_000 - denied.server_time_us) / 1e6 <= denied.wait_s <= 1.0
    loop = asyncio.get_running_loop()
    started = loop.time()
    await limiter.acquire(10, max_wait_s=5)
    assert await _server_time_us(redis) >= recorded + 1_000_000
    assert loop.time() - started < 5


@pytest.mark.redis
@pytest.mark.redis_cluster
@pytest.mark.usefixtures("cleanup")
async def test_requests_that_can_never_fit_are_invalid(redis: RedisClient, key: str) -> None:
    limiter = RedisRateLimiter(
        redis, key, RateLimit(requests_per_minute=10, tokens_per_minute=1000)
    )
    for tokens in (1001, -1):
        with pytest.raises(ProviderError) as caught:
            await limiter.acquire(tokens)
        assert caught.value.code is ErrorCode.INVALID_INPUT
        assert not caught.value.retryable
    # refused before touching Redis: no budget was spent
    assert await redis.exists(*limiter.redis_keys) == 0


@pytest.mark.redis
@pytest.mark.redis_cluster
@pytest.mark.usefixtures("cleanup")
async def test_no_limits_means_no_redis_state(redis: RedisClient, key: str) -> None:
    limiter = RedisRateLimiter(redis, key, RateLimit())
    for _ in range(5):
        await limiter.acquire(10_000, max_wait_s=0)
    await limiter.record_tokens(10_000)
    assert await redis.exists(*limiter.redis_keys) == 0


# Each process connects, says "ready", waits for "go", then takes grants as fast as the limiter
# allows for DURATION_S, and prints the Redis server time of every grant it got.
_HAMMER = """
import asyncio, json, sys
from providers.rate_limits.limiter import RateLimit, RedisRateLimiter
from providers.redis_client import connect_redis

async def main(url, key, rpm, window_s, duration_s):
    client = connect_redis(url)
    limiter = RedisRateLimiter(client, key, RateLimit(requests_per_minute=rpm, window_s=window_s))
    await client.ping()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    loop = asyncio.get_running_loop()
    end = loop.time() + duration_s
    grants = []
    while (left := end - loop.time()) > 0:
        decision = await limiter.try_acquire()
        if decision.allowed:
            grants.append(decision.server_time_us)
        else:
            await asyncio.sleep(min(decision.wait_s, left))
    await client.aclose()
    print(json.dumps(grants), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]),
                 float(sys.argv[5])))
"""


@pytest.mark.redis
@pytest.mark.redis_cluster
@pytest.mark.usefixtures("cleanup")
async def test_two_processes_share_one_limit(redis_url: str, key: str) -> None:
    # Two and a half windows of half a second (two of a second once): the same crossings
    # of a window's edge by both processes, in half the time.
    rpm, window_s, duration_s = 1200, 0.5, 1.25
    budget = 10  # per half-second window
    args = [redis_url, key, str(rpm), str(window_s), str(duration_s)]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _HAMMER,
            *args,
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
            assert line.strip() == b"ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        outputs = [await asyncio.wait_for(p.communicate(), timeout=30) for p in procs]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert [p.returncode for p in procs] == [0, 0]
    per_process: list[list[int]] = [json.loads(out) for out, _ in outputs]
    assert all(len(grants) > 0 for grants in per_process), [len(g) for g in per_process]

    grants = sorted(t for process_grants in per_process for t in process_grants)
    window_us = int(window_s * 1_000_000)
    busiest = max(sum(1 for t in grants if start <= t < start + window_us) for start in grants)
    assert busiest <= budget
    # Both processes asked far more than the budget, so the first window was filled.
    assert busiest == budget
    assert len(grants) <= budget * 3  # windows starting at 0 s, 1 s and 2 s of a 2.5 s run
