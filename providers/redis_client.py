"""The one way the fleet opens Redis: a per-process pool with one client per URL, whose
connections are health-checked before use and whose commands that hit a dropped connection
are retried on a fresh one, so a client outlives a Redis restart instead of failing for a
minute on its stale sockets.

A URL names either one Redis (``redis://``, ``rediss://``) or a Redis Cluster:
``redis+cluster://[user:password@]host:port[,host:port...][/0][?options]`` (``rediss+cluster``
for TLS). The hosts are where the client starts discovering the cluster (one is enough, more
survive one being down); it then follows the cluster's own slot map. Every key family the
fleet writes carries a hash tag, so each script, transaction and multi-key command stays in
one slot."""

from __future__ import annotations

from typing import Any, Final, TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contracts.errors import ConfigError
from contracts.secrets import Secret

# A connection idle this long is PINGed before it is used again.
HEALTH_CHECK_INTERVAL_S = 5
# No command the fleet sends blocks on the server: one that takes this long is a Redis
# that stopped answering, and the caller gets an error instead of waiting forever.
SOCKET_TIMEOUT_S = 10.0
# The cluster schemes, and the plain scheme each node is reached with.
CLUSTER_SCHEMES: Final = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

RedisClient: TypeAlias = aioredis.Redis | RedisCluster
"""What every Redis user of the fleet is handed: one Redis or a cluster, the same commands."""
REDIS_FAILURES: Final = (RedisError, RedisClusterException, OSError)
"""What a command can fail with: redis-py's errors, a cluster client's own (no RedisError: no
node reachable, a slot no node serves) and the socket's."""


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def connect_redis(url: str, *, socket_timeout_s: float = SOCKET_TIMEOUT_S) -> RedisClient:
    """A client of its own, for tools that live outside a worker process (the CLI)."""
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout_s,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError, ConnectionResetError],
    }
    if not is_cluster_url(url):
        return aioredis.Redis.from_url(url, **options)
    first, others = cluster_startup_nodes(url)
    return RedisCluster.from_url(
        first, startup_nodes=[ClusterNode(host, port) for host, port in others], **options
    )


def cluster_startup_nodes(url: str) -> tuple[str, list[tuple[str, int]]]:
    """A cluster URL as redis-py takes it: the plain URL of its first node (with the
    credentials and options), and the host and port of each other node."""
    scheme, _, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    path = tail.partition("?")[0]
    if path not in ("", "0"):
        # Only the database number of the path is meant: it holds no credentials.
        raise ConfigError(
            f"a Redis Cluster URL names database {path!r}; a cluster has only database 0"
        )
    nodes = [_host_port(host) for host in hosts.split(",")]
    if not all(host for host, _ in nodes):
        raise ConfigError("a Redis Cluster URL needs host:port[,host:port...] after '://'")
    first_host, first_port = nodes[0]
    first = f"{CLUSTER_SCHEMES[scheme.lower()]}://{userinfo}{at}{_in_url(first_host)}:{first_port}"
    return f"{first}{slash}{tail}", nodes[1:]


def _host_port(address: str) -> tuple[str, int]:
    address = address.strip()
    host, port = address, "6379"
    if ":" in address and not address.endswith("]"):  # a port, not only an IPv6 address
        host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"a Redis Cluster URL names port {port!r} of {host!r}: expected a number")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class RedisPool:
    """The Redis clients of one process, one per URL, opened on first use and closed
    together by the process's owner. The ledger, conversation memory, rate limits and the
    Redis vector store of a worker share one client (and so one connection pool) unless a
    provider is configured with a Redis of its own."""

    def __init__(self, default_url: str) -> None:
        self.default_url = default_url
        self._clients: dict[str, RedisClient] = {}

    def client(self, url: str | Secret | None = None) -> RedisClient:
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
