"""What a process opens once and hands to every provider it creates."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.errors import ConfigError
from contracts.secrets import Secret
from providers.catalogue import NO_MODELS, ModelCatalogue
from providers.redis_client import RedisClient, RedisPool


@dataclass(frozen=True)
class Shared:
    """Passed to every provider factory; providers that need none of it ignore it. The
    process owns what is in here and closes it after its providers: a provider never closes
    a shared client."""

    redis: RedisPool | None = None
    # The worker's model catalogue: what each model can do and costs (providers/catalogue.py).
    models: ModelCatalogue = NO_MODELS

    def redis_client(self, provider: str, url: Secret | None = None) -> RedisClient:
        """The process's client for ``url`` (default: the process's own Redis)."""
        if self.redis is None:
            raise ConfigError(
                f"provider {provider!r} needs Redis: create it with "
                "shared=Shared(redis=RedisPool(url))"
            )
        return self.redis.client(url)


NOTHING_SHARED = Shared()
