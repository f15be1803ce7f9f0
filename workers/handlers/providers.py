"""The providers a handler needs, created from the worker's settings and loaded (which, for
the local models, includes their start-up self-check)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from contracts.errors import ErrorCode, StartupCheckFailed
from providers.call_retry import CallRetryPolicy
from providers.chat import ChatProvider, chat_providers
from providers.chat.catalogued import with_catalogue
from providers.embeddings import EmbeddingProvider, embedding_providers
from providers.errors import ProviderError
from providers.rate_limits.limiter import RateLimit
from providers.rate_limits.wrapped import (
    RateLimitedChat,
    RateLimitedEmbeddings,
    RateLimitedRerank,
    RateLimitedTranscription,
)
from providers.redis_client import REDIS_FAILURES, RedisClient
from providers.rerank import RerankProvider, rerank_providers
from providers.router import ModelRouter
from providers.shared import Shared
from providers.speech import SpeechProvider, speech_providers
from providers.transcription import TranscriptionProvider, transcription_providers
from workers.service_wait import SERVICE_WAIT, until_reachable
from workers.settings import ProviderSpec, WorkerSettings

log = logging.getLogger(__name__)


class _Loadable(Protocol):
    name: str

    async def load(self) -> None: ...


class _Checkable(Protocol):
    name: str

    async def health(self) -> bool: ...


# A provider that has not answered its health check in this long counts as down.
HEALTH_TIMEOUT_S = 5.0


async def health_of(providers: Sequence[_Checkable]) -> dict[str, bool]:
    """Each provider's own health check, by name; one that raises or hangs is down."""

    async def check(provider: _Checkable) -> bool:
        try:
            return await asyncio.wait_for(provider.health(), timeout=HEALTH_TIMEOUT_S)
        except Exception:
            log.warning("health check of provider %r failed", provider.name, exc_info=True)
            return False

    results = await asyncio.gather(*(check(p) for p in providers))
    return {p.name: ok for p, ok in zip(providers, results, strict=True)}


class _ServedModels(Protocol):
    @property
    def models(self) -> tuple[str, ...]: ...


class _Routed(Protocol):
    """A provider as a handler's router holds it: served by name, checked, closed."""

    name: str

    @property
    def capabilities(self) -> _ServedModels: ...

    async def health(self) -> bool: ...

    async def aclose(self) -> None: ...


_R = TypeVar("_R", bound=_Routed)


class RoutedHandler(Generic[_R]):
    """What every kind's handler shares: the router of its providers, their health checks
    and their closing (a handler with more to close closes it, then calls this one)."""

    def __init__(self, router: ModelRouter[_R]) -> None:
        self._router = router

    async def health(self) -> dict[str, bool]:
        return await health_of(self._router.providers)

    async def aclose(self) -> None:
        for provider in self._router.providers:
            await provider.aclose()


_P = TypeVar("_P", bound=_Loadable)


async def loaded(
    category: str, providers: list[_P], redis_wait: CallRetryPolicy = SERVICE_WAIT
) -> list[_P]:
    """Each provider loaded; the local models also make one tiny real call in ``load``, so
    a model that cannot run on this machine stops the worker here, named, before it is ready.
    A provider that cannot reach its Redis (restarting, or not up yet) is waited for, as the
    broker is (workers/service_wait.py): a worker a supervisor starts during a Redis restart
    must not exit for it."""
    for provider in providers:
        log.info("loading %s provider %r", category, provider.name)
        try:
            await until_reachable(
                provider.load,
                unreachable=_redis_unreachable,
                who=f"{category} provider {provider.name!r}",
                service="its Redis",
                what="loading",
                policy=redis_wait,
            )
        except Exception as exc:
            raise StartupCheckFailed(category, provider.name, exc) from exc
    return providers


def _redis_unreachable(exc: Exception) -> bool:
    return (
        isinstance(exc, ProviderError)
        and exc.code is ErrorCode.PROVIDER_DOWN
        and isinstance(exc.__cause__, REDIS_FAILURES)
    )


def chat_provider(spec: ProviderSpec, shared: Shared) -> ChatProvider:
    provider = with_catalogue(chat_providers.create(spec.name, spec.config, shared), shared.models)
    return _rate_limited(RateLimitedChat, provider, spec, shared)


_Provider = TypeVar("_Provider")


def _rate_limited(
    wrapper: Callable[[_Provider, RedisClient, RateLimit, float], _Provider],
    provider: _Provider,
    spec: ProviderSpec,
    shared: Shared,
) -> _Provider:
    """``provider`` behind the rate limit its entry sets, shared by every replica; as it is
    when the entry sets none."""
    if spec.rate_limit is None:
        return provider
    redis = shared.redis_client("rate limit")
    return wrapper(provider, redis, spec.rate_limit, spec.rate_limit_max_wait_s)


def _embedder(spec: ProviderSpec, shared: Shared) -> EmbeddingProvider:
    provider = embedding_providers.create(spec.name, spec.config, shared)
    return _rate_limited(RateLimitedEmbeddings, provider, spec, shared)


def transcriber(spec: ProviderSpec, shared: Shared) -> TranscriptionProvider:
    provider = transcription_providers.create(spec.name, spec.config, shared)
    return _rate_limited(RateLimitedTranscription, provider, spec, shared)


def speaker(spec: ProviderSpec, shared: Shared) -> SpeechProvider:
    return speech_providers.create(spec.name, spec.config, shared)


async def embedders(settings: WorkerSettings, shared: Shared) -> ModelRouter[EmbeddingProvider]:
    providers = [_embedder(s, shared) for s in settings.embeddings]
    return ModelRouter("embeddings", await loaded("embeddings", providers))


def _reranker(spec: ProviderSpec, shared: Shared) -> RerankProvider:
    provider = rerank_providers.create(spec.name, spec.config, shared)
    return _rate_limited(RateLimitedRerank, provider, spec, shared)


async def rerankers(settings: WorkerSettings, shared: Shared) -> ModelRouter[RerankProvider]:
    providers = [_reranker(s, shared) for s in settings.rerank]
    return ModelRouter("rerank", await loaded("rerank", providers))
