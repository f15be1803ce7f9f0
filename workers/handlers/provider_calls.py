"""The wrapper around every provider call a handler makes, in FastStream's middleware
shape: the call in a span named by the GenAI conventions (providers/telemetry.py), a chat
call held to its provider's capabilities (providers/chat/guarded.py), and usage completed
where the provider left counts out, priced at the model catalogue's prices of whoever
answered, and counted in fleet_cost_usd_total. Handlers reach providers only through it."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import AbstractAsyncContextManager

import msgspec

from contracts.generate import ChatMessage
from contracts.usage import Usage
from providers.catalogue import NO_MODELS, ModelCatalogue
from providers.chat.base import ChatDone, ChatEvent, ChatParams, ChatProvider, TextPiece
from providers.chat.guarded import guarded
from providers.chat.streams import closing
from providers.chat.usage_count import completed_usage
from providers.embeddings.base import EmbeddingProvider, Embeddings
from providers.telemetry import ProviderSpan, provider_span
from providers.transcription.base import TranscriptionEvent, TranscriptionProvider
from workers.metrics import WorkerMetrics


class ProviderCalls:
    def __init__(
        self, models: ModelCatalogue = NO_MODELS, metrics: WorkerMetrics | None = None
    ) -> None:
        self._models = models
        self._metrics = metrics

    async def chat(
        self, provider: ChatProvider, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncGenerator[ChatEvent, None]:
        """The provider's events as it makes them, and last its ChatDone (always one) with
        the usage completed, priced and counted."""
        held = guarded(provider)
        held.check(messages, params)  # a call refused is never made: it has no span
        pieces: list[str] = []
        done = ChatDone(finish_reason="stop", usage=Usage())
        async with provider_span("chat", provider.name, "chat", params.model) as span:
            async with closing(held.stream_unchecked(messages, params)) as events:
                async for event in events:
                    if isinstance(event, ChatDone):
                        done = event
                        continue
                    if isinstance(event, TextPiece):
                        pieces.append(event.text)
                    yield event
            span.record_usage(done.usage)
            span.set_finish_reasons(done.finish_reason)
        answer = ChatMessage(role="assistant", content="".join(pieces), tool_calls=done.tool_calls)
        usage = completed_usage(
            done.usage, provider=provider, messages=messages, params=params, answer=answer
        )
        # A chain names the link that answered: its prices, not the chain's.
        answered_by = done.provider or provider.name
        usage = self.settle(answered_by, done.model or params.model, usage)
        yield msgspec.structs.replace(done, usage=usage)

    async def embed(self, provider: EmbeddingProvider, texts: list[str], model: str) -> Embeddings:
        """One embeddings call; its usage is the caller's to settle (a batch of several
        requests' texts is settled per request)."""
        async with provider_span("embeddings", provider.name, "embeddings", model) as span:
            result = await provider.embed(texts, model=model)
            span.record_usage(result.usage)
        return result

    async def transcribe(
        self, provider: TranscriptionProvider, audio: bytes, *, model: str, language: str | None
    ) -> AsyncGenerator[TranscriptionEvent, None]:
        async with provider_span("transcription", provider.name, "transcription", model):
            async for event in provider.transcribe(audio, model=model, language=language):
                yield event

    def store(self, store: str, operation: str) -> AbstractAsyncContextManager[ProviderSpan]:
        """Around one vector store call (``upsert``, ``delete``, ``query``):
        ``async with calls.store(store.name, "query"):``."""
        return provider_span("vectorstores", store, operation, None)

    def settle(self, provider: str, model: str, usage: Usage) -> Usage:
        """``usage`` priced at the catalogue's prices for ``provider``'s ``model``, and its
        cost counted."""
        usage = self._models.priced(provider, model, usage)
        if self._metrics is not None:
            self._metrics.spent(provider, model, usage)
        return usage
