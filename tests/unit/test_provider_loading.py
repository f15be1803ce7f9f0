"""A worker's providers at start-up: one that cannot reach its Redis is waited for (a
worker started during a Redis restart must not exit), any other failure stops the worker,
naming the provider."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from contracts.errors import ErrorCode, StartupCheckFailed
from providers.call_retry import CallRetryPolicy
from providers.errors import ProviderError
from workers.handlers.providers import loaded

NO_WAIT = CallRetryPolicy(base_delay_s=0.0, max_delay_s=0.0, jitter="none")


class Flaky:
    """Fails its first ``failures`` loads with ``error`` (raised from ``cause``)."""

    name = "flaky"

    def __init__(self, failures: int, cause: Exception, code: ErrorCode) -> None:
        self.failures, self.cause, self.code = failures, cause, code
        self.loads = 0

    async def load(self) -> None:
        self.loads += 1
        if self.loads <= self.failures:
            raise ProviderError(self.code, "flaky.load", str(self.cause)) from self.cause


async def test_a_provider_whose_redis_is_away_is_loaded_once_it_answers() -> None:
    provider = Flaky(3, RedisConnectionError("Error 111 connecting"), ErrorCode.PROVIDER_DOWN)
    assert await loaded("vector store", [provider], redis_wait=NO_WAIT) == [provider]
    assert provider.loads == 4


@pytest.mark.parametrize(
    ("cause", "code"),
    [
        (ValueError("does not look like a valid GGUF model file"), ErrorCode.PROVIDER_DOWN),
        (RedisConnectionError("a Redis error that is not down"), ErrorCode.INVALID_INPUT),
    ],
)
async def test_any_other_failure_stops_the_start_naming_the_provider(
    cause: Exception, code: ErrorCode
) -> None:
    provider = Flaky(1, cause, code)
    with pytest.raises(StartupCheckFailed, match="provider 'flaky' failed its start-up check"):
        await loaded("chat", [provider], redis_wait=NO_WAIT)
    assert provider.loads == 1
