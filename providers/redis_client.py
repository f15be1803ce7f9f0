"""The one way the fleet opens Redis: a per-process pool with one client per URL, whose
connections are health-checked before use and whose commands that hit a dropped connection
are retried on a fresh one, so a client outlives a Redis restart instead of failing for a
minute on its stale sockets."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contracts.secrets import Secret

# A connection idle this long is PINGed before it is used again.
HEALTH_CHECK_INTERVAL_S = 5
# No command the fleet sends blocks on the server: one that takes this long is a Redis
# that stopped answering, and the caller gets an error instead of waiting forever.
SOCKET_TIMEOUT_S = 10.0


def connect_redis(url: str, *, socket_timeout_s: float = SOCKET_TIMEOUT_S) -> aioredis.Redis:
    """A client of its own, for tools that live outside a worker process (the CLI)."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=socket_timeout_s,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionResetError],
    )


class RedisPool:
    """The Redis clients of one process, one per URL, opened on first use and closed
    together by the process's owner. The ledger, conversation memory, rate limits and the
    Redis vector store of a worker share one client (and so one connection pool) unless a
    provider is configured with a Redis of its own."""

    def __init__(self, default_url: str) -> None:
        self.default_url = default_url
        self._clients: dict[str, aioredis.Redis] = {}

    def client(self, url: str | Secret | None = None) -> aioredis.Redis:
        """The shared client for ``url`` (default: the process's Redis)."""
        if isinstance(url, Secret):
            url = url.reveal()
        key = url or self.default_url
        if key not in self._clients:
            self._clients[key] = connect_redis(key)
        return self._clients[key]

    def __len__(self) -> int:
        return len(self._clients)

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
