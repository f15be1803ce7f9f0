"""What a process opens once and hands to every provider it creates."""

from __future__ import annotations

import os
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
    # Threads each local model of the process runs on when its provider's config names none
    # (the worker's ``model_threads``); None: every core. Several model processes on one
    # machine each taking every core serve far less than each taking its share.
    model_threads: int | None = None

    def threads_for(self, configured: int | None) -> int:
        """How many threads a local model runs on: its provider's own setting, else the
        process's ``model_threads``, else every core."""
        return configured or self.model_threads or os.cpu_count() or 1

    def redis_client(self, provider: str, url: Secret | None = None) -> RedisClient:
        """The process's client for ``url`` (default: the process's own Redis)."""
        if self.redis is None:
            raise ConfigError(
                f"provider {provider!r} needs Redis: create it with "
                "shared=Shared(redis=RedisPool(url))"
            )
        return self.redis.client(url)


NOTHING_SHARED = Shared()
