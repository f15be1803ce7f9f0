"""How a Redis URL becomes a client: one Redis, or a Redis Cluster for redis+cluster://."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from contracts import ConfigError
from providers.redis_client import RedisPool, cluster_startup_nodes, connect_redis


async def test_a_cluster_url_opens_a_cluster_client_on_every_named_node() -> None:
    client = connect_redis("redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003/")
    assert isinstance(client, RedisCluster)
    nodes = sorted((node.host, node.port) for node in client.startup_nodes)
    assert nodes == [("127.0.0.1", 7001), ("127.0.0.1", 7002), ("127.0.0.1", 7003)]
    await client.aclose()


async def test_a_plain_url_opens_one_redis() -> None:
    client = RedisPool("redis://127.0.0.1:1/0").client()
    assert isinstance(client, aioredis.Redis)
    await client.aclose()


@pytest.mark.parametrize(
    ("url", "first", "others"),
    [
        ("redis+cluster://h1:7001", "redis://h1:7001", []),
        ("redis+cluster://h1:7001,h2/0", "redis://h1:7001/0", [("h2", 6379)]),
        (
            "rediss+cluster://user:pw@[::1]:7001,[::2]:7002/?ssl_cert_reqs=none",
            "rediss://user:pw@[::1]:7001/?ssl_cert_reqs=none",
            [("::2", 7002)],
        ),
    ],
)
def test_cluster_urls_keep_credentials_and_options_on_the_first_node(
    url: str, first: str, others: list[tuple[str, int]]
) -> None:
    assert cluster_startup_nodes(url) == (first, others)


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis+cluster://:secret@h1:7001/2", "only database 0"),
        ("redis+cluster:///", "host:port"),
        ("redis+cluster://h1:http", "port 'http'"),
    ],
)
def test_unusable_cluster_urls_are_config_errors(url: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint) as caught:
        RedisPool(url).client()
    assert "secret" not in str(caught.value)
