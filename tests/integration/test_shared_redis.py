"""A worker process opens one Redis client and hands it to everyone who needs Redis: the
ledger, conversation memory and the shared rate limit of a generate worker; on one Redis and
on a Redis Cluster alike."""

from __future__ import annotations

import msgspec
import pytest

from providers import redis_client
from providers.rate_limits.limiter import RateLimit
from providers.redis_client import RedisClient, connect_redis
from tests.conftest import Infra
from tests.integration.conftest import MODEL
from tests.integration.harness import serving
from workers import ProviderSpec, WorkerSettings, build_worker

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.redis_cluster, pytest.mark.model]


async def test_ledger_memory_and_rate_limit_share_one_client(
    settings: WorkerSettings,
    infra: Infra,
    redis_url: str,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[str] = []

    def counting(url: str) -> RedisClient:
        opened.append(url)
        return connect_redis(url)

    monkeypatch.setattr(redis_client, "connect_redis", counting)
    limited = ProviderSpec(name="local-llama", rate_limit=RateLimit(requests_per_minute=600))
    settings = msgspec.structs.replace(settings, redis_url=redis_url, chat=[limited])
    assert settings.idempotency
    assert settings.memory is not None

    async with (
        serving(await build_worker("generate", settings)) as worker,
        infra.client(namespace=namespace, default_timeout_s=60) as client,
    ):
        first = await client.generate("Hi", model=MODEL, max_tokens=4, session_id="s-1")
        again = await client.generate("Hi", model=MODEL, max_tokens=4, session_id="s-1")
        assert first.text
        assert again.text
        assert len(worker.redis) == 1
    assert opened == [redis_url]
