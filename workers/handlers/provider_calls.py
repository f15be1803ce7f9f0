"""The wrapper around every provider call a handler makes, in FastStream's middleware
shape: the call in a span named by the GenAI conventions (providers/telemetry.py), a chat
call held to its provider's capabilities (providers/chat/guarded.py), and usage completed
where the provider left counts out, priced at the model catalogue's prices of whoever
answered, and counted in fleet_cost_usd_total. Handlers reach providers only through it."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager, aclosing
from types import TracebackType

import msgspec

from contracts.generate import ChatMessage
from contracts.usage import Usage
from providers.catalogue import NO_MODELS, ModelCatalogue
from providers.chat.base import ChatDone, ChatEvent, ChatParams, ChatProvider
from providers.chat.guarded import guarded
from providers.chat.streams import closing
from providers.chat.usage_count import completed_usage
from providers.embeddings.base import EmbeddingProvider, Embeddings
from providers.rerank.base import RerankProvider, Scores
from providers.speech.base import SpeechParams, SpeechProvider
from providers.telemetry import ProviderSpan, span_opener
from providers.transcription.base import TranscriptionEvent, TranscriptionProvider
from workers.metrics import WorkerMetrics


class ProviderCalls:
    def __init__(
        self, models: ModelCatalogue = NO_MODELS, metrics: WorkerMetrics | None = None
    ) -> None:
        self._models = models
        self._metrics = metrics
        self.span = span_opener()  # asked once: the worker is built after telemetry is set up

    def chat(
        self, provider: ChatProvider, messages: list[ChatMessage], params: ChatParams
    ) -> ChatCall:
        """One chat call: ``async with calls.chat(...) as call:``, read ``call.events`` (the
        provider's own stream: a wrapper generator around it cost every job a few
        microseconds), then ``call.finish(done, text)``. A call the provider cannot take is
        refused here, before any span (ProviderError)."""
        held = guarded(provider)
        held.check(messages, params)
        return ChatCall(self, provider, held.stream_unchecked(messages, params), messages, params)

    async def embed(self, provider: EmbeddingProvider, texts: list[str], model: str) -> Embeddings:
        """One embeddings call; its usage is the caller's to settle (a batch of several
        requests' texts is settled per request)."""
        async with self.span("embeddings", provider.name, "embeddings", model) as span:
            result = await provider.embed(texts, model=model)
            span.record_usage(result.usage)
            span.set_response_model(result.model)
        return result

    async def rerank(
        self,
        provider: RerankProvider,
        query: str,
        documents: list[str],
        *,
        model: str,
        max_tokens_per_doc: int | None,
    ) -> Scores:
        """One rerank call; its usage is the caller's to settle (a request split into
        several calls is settled once)."""
        async with self.span("rerank", provider.name, "rerank", model) as span:
            scores = await provider.rerank(
                query, documents, model=model, max_tokens_per_doc=max_tokens_per_doc
            )
            span.record_usage(scores.usage)
        return scores

    async def transcribe(
        self, provider: TranscriptionProvider, audio: bytes, *, model: str, language: str | None
    ) -> AsyncGenerator[TranscriptionEvent, None]:
        async with self.span("transcription", provider.name, "transcription", model):
            async for event in provider.transcribe(audio, model=model, language=language):
                yield event

    async def speak(
        self, provider: SpeechProvider, text: str, params: SpeechParams
    ) -> AsyncGenerator[bytes, None]:
        async with (
            self.span("speech", provider.name, "speech", params.model),
            aclosing(provider.synthesize(text, params)) as pieces,
        ):
            async for audio in pieces:
                yield audio

    def settle_characters(self, provider: str, model: str, characters: int) -> float | None:
        """What ``characters`` of input cost at the catalogue's price per character for
        ``provider``'s ``model`` (None: no price), counted."""
        cost = self._models.character_cost_usd(provider, model, characters)
        if self._metrics is not None:
            self._metrics.spent_usd(provider, model, cost)
        return cost

    def store(self, store: str, operation: str) -> AbstractAsyncContextManager[ProviderSpan]:
        """Around one vector store call (``upsert``, ``delete``, ``query``):
        ``async with calls.store(store.name, "query"):``."""
        return self.span("vectorstores", store, operation, None)

    def settle(self, provider: str, model: str, usage: Usage) -> Usage:
        """``usage`` priced at the catalogue's prices for ``provider``'s ``model``, and its
        cost counted."""
        usage = self._models.priced(provider, model, usage)
        if self._metrics is not None:
            self._metrics.spent(provider, model, usage)
        return usage


class ChatCall:
    """One chat call in its span; the stream is closed when the call ends, read to its end
    or not."""

    def __init__(
        self,
        calls: ProviderCalls,
        provider: ChatProvider,
        events: AsyncIterator[ChatEvent],
        messages: list[ChatMessage],
        params: ChatParams,
    ) -> None:
        self._calls = calls
        self._provider = provider
        self.events = events  # not started: the call is made once it is read
        self._closing = closing(events)
        self._messages = messages
        self._params = params
        self._span_scope = calls.span("chat", provider.name, "chat", params.model)
        self._span: ProviderSpan | None = None

    async def __aenter__(self) -> ChatCall:
        self._span = await self._span_scope.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._closing.__aexit__(exc_type, exc, tb)
        finally:
            await self._span_scope.__aexit__(exc_type, exc, tb)

    def finish(self, done: ChatDone | None, text: str) -> ChatDone:
        """The call's ChatDone (a stream that ended without one: stopped, no usage) with its
        usage completed where the provider left counts out, priced at the catalogue's
        prices of whoever answered and counted; recorded on the span."""
        assert self._span is not None, "finish() inside ``async with``"
        done = done or ChatDone(finish_reason="stop", usage=Usage())
        self._span.record_usage(done.usage)
        self._span.set_finish_reasons(done.finish_reason)
        answer = ChatMessage(role="assistant", content=text, tool_calls=done.tool_calls)
        usage = completed_usage(
            done.usage,
            provider=self._provider,
            messages=self._messages,
            params=self._params,
            answer=answer,
        )
        # A chain names the link that answered: its prices, not the chain's, and its model
        # on the span.
        answered_by = done.provider or self._provider.name
        model = done.model or self._params.model
        self._span.set_response_model(model)
        usage = self._calls.settle(answered_by, model, usage)
        return msgspec.structs.replace(done, usage=usage)
