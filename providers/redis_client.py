"""The one way the fleet opens a Redis client: connections are health-checked before use
and a command that hits a dropped connection is retried on a fresh one, so a client outlives
a Redis restart instead of failing for a minute on its stale sockets."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# A connection idle this long is PINGed before it is used again.
HEALTH_CHECK_INTERVAL_S = 5


def connect_redis(url: str, *, socket_timeout_s: float | None = None) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url,
        socket_timeout=socket_timeout_s,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionResetError],
    )
