"""Chat, embedding, rerank and transcription providers behind a rate limit shared by all replicas
(through Redis).

The worker wraps a provider when its config sets ``rate_limit``: each call first waits for
room in the request and token budgets (input tokens estimated from the text), and a chat
call charges its completion tokens when it ends. A transcription call counts against the
request budget only: its tokens are not known before the call, so the worker's settings
refuse a token budget for it (workers/settings.py).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import ClassVar, Generic, Protocol, TypeVar

from contracts.generate import ChatMessage
from contracts.tokens import estimate_message_tokens, estimate_rerank_tokens, estimate_tokens
from providers.chat.base import ChatCapabilities, ChatDone, ChatEvent, ChatParams, ChatProvider
from providers.chat.guarded import GuardedChat, check_call, unchecked
from providers.chat.streams import closing
from providers.embeddings.base import EmbeddingCapabilities, EmbeddingProvider, Embeddings
from providers.rate_limits.limiter import RateLimit, RedisRateLimiter
from providers.redis_client import RedisClient
from providers.rerank.base import RerankCapabilities, RerankProvider, Scores
from providers.transcription.base import (
    TranscriptionCapabilities,
    TranscriptionEvent,
    TranscriptionProvider,
)


class _Lifecycle(Protocol):
    name: str

    async def load(self) -> None: ...

    async def health(self) -> bool: ...

    async def aclose(self) -> None: ...


Inner = TypeVar("Inner", bound=_Lifecycle)


class _Limited(Generic[Inner]):
    """The shared part: the limiter, and the inner provider's lifecycle passed through."""

    #: The limit's key names the category and the provider: "chat:openai".
    category: ClassVar[str]

    def __init__(
        self,
        inner: Inner,
        redis: RedisClient,
        limit: RateLimit,
        max_wait_s: float = 30.0,
    ) -> None:
        self._inner = inner
        self.name = inner.name
        self._limiter = RedisRateLimiter(redis, f"{self.category}:{inner.name}", limit)
        self._max_wait_s = max_wait_s

    async def load(self) -> None:
        await self._inner.load()

    async def health(self) -> bool:
        return await self._inner.health()

    async def aclose(self) -> None:
        await self._inner.aclose()  # the Redis client belongs to the process's pool


class RateLimitedChat(_Limited[ChatProvider], GuardedChat):
    """A chat call refused (as the wrapped provider refuses it) before it waits for the
    limit: a call that cannot be made spends nothing of it."""

    category = "chat"

    @property
    def capabilities(self) -> ChatCapabilities:
        return self._inner.capabilities

    def check(self, messages: list[ChatMessage], params: ChatParams) -> None:
        check_call(self._inner, messages, params)

    async def _stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatEvent]:
        prompt_tokens = sum(estimate_message_tokens(m) for m in messages)
        await self._limiter.acquire(prompt_tokens, max_wait_s=self._max_wait_s)
        output_tokens = 0
        try:
            async with closing(unchecked(self._inner, messages, params)) as events:
                async for event in events:
                    if isinstance(event, ChatDone):
                        output_tokens = event.usage.completion_tokens
                    yield event
        finally:
            await self._limiter.record_tokens(output_tokens)


class RateLimitedEmbeddings(_Limited[EmbeddingProvider]):
    category = "embeddings"

    @property
    def capabilities(self) -> EmbeddingCapabilities:
        return self._inner.capabilities

    async def embed(self, texts: list[str], *, model: str) -> Embeddings:
        tokens = sum(estimate_tokens(t) for t in texts)
        await self._limiter.acquire(tokens, max_wait_s=self._max_wait_s)
        return await self._inner.embed(texts, model=model)


class RateLimitedRerank(_Limited[RerankProvider]):
    category = "rerank"

    @property
    def capabilities(self) -> RerankCapabilities:
        return self._inner.capabilities

    async def rerank(
        self, query: str, documents: list[str], *, model: str, max_tokens_per_doc: int | None
    ) -> Scores:
        tokens = estimate_rerank_tokens(query, documents)
        await self._limiter.acquire(tokens, max_wait_s=self._max_wait_s)
        return await self._inner.rerank(
            query, documents, model=model, max_tokens_per_doc=max_tokens_per_doc
        )


class RateLimitedTranscription(_Limited[TranscriptionProvider]):
    category = "transcription"

    @property
    def capabilities(self) -> TranscriptionCapabilities:
        return self._inner.capabilities

    async def transcribe(
        self, audio: bytes, *, model: str, language: str | None = None
    ) -> AsyncGenerator[TranscriptionEvent, None]:
        await self._limiter.acquire(max_wait_s=self._max_wait_s)
        async for event in self._inner.transcribe(audio, model=model, language=language):
            yield event
