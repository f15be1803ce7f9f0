"""The generate handler: memory in, streamed deltas out, new turns saved, final result."""

from __future__ import annotations

from collections.abc import AsyncIterator

from contracts.generate import ChatMessage, GenerateRequest
from contracts.names import Lane
from contracts.replies import GenerateResult, ReplyChunk, ToolCallDelta
from contracts.usage import Usage
from providers.catalogue import NO_MODELS, ModelCatalogue
from providers.chat.base import ChatDone, ChatParams, ChatProvider, TextPiece, ToolCallPiece
from providers.chat.support import require_support
from providers.chat.usage_count import completed_usage
from providers.memory import memory_stores
from providers.memory.base import MemoryStore
from providers.router import ModelRouter
from providers.shared import Shared
from providers.telemetry import provider_span
from workers.handlers.providers import chat_provider, health_of, loaded
from workers.handlers.reply_stream import ChunkStamper
from workers.handlers.structured_output import output_check
from workers.metrics import WorkerMetrics
from workers.settings import WorkerSettings


def chat_params(request: GenerateRequest, lane: Lane = "interactive") -> ChatParams:
    """Everything of the request a provider is asked to honour, and the lane it came on."""
    return ChatParams(
        model=request.model,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop,
        tools=request.tools,
        tool_choice=request.tool_choice,
        seed=request.seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        user=request.user,
        response_format=request.response_format,
        lane=lane,
    )


class GenerateHandler:
    kind = "generate"

    def __init__(
        self,
        router: ModelRouter[ChatProvider],
        memory: MemoryStore | None = None,
        *,
        models: ModelCatalogue = NO_MODELS,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._router = router
        self._memory = memory
        self._models = models
        self._metrics = metrics

    async def handle(
        self, request: GenerateRequest, stamper: ChunkStamper, *, lane: Lane = "interactive"
    ) -> AsyncIterator[ReplyChunk]:
        provider = self._router.resolve(request.model, request.provider)
        messages = [*await self._history(request), *request.messages]
        params = chat_params(request, lane)
        # The providers check too; this holds any registered provider to the contract.
        require_support(
            provider.capabilities,
            messages,
            params,
            provider=provider.name,
            op=f"{provider.name}.chat",
        )
        # A schema that is not one is refused here, before the model is called.
        check = output_check(request.response_format)
        pieces: list[str] = []
        done = ChatDone(finish_reason="stop", usage=Usage())
        async with provider_span("chat", provider.name, "chat", request.model) as call:
            async for event in provider.stream_chat(messages, params):
                if isinstance(event, TextPiece):
                    pieces.append(event.text)
                    if request.stream:
                        yield stamper.delta(event.text)
                elif isinstance(event, ToolCallPiece):
                    if request.stream:
                        yield _tool_call_delta(event, stamper)
                else:
                    done = event
            call.record_usage(done.usage)
            call.set_finish_reasons(done.finish_reason)
        text = "".join(pieces)
        answer = ChatMessage(role="assistant", content=text, tool_calls=done.tool_calls)
        usage = self._usage(provider, messages, params, answer, done)
        if check is not None and not done.tool_calls:
            # Before the turn is saved: an answer of the wrong shape is not kept either.
            check.verify(text, done.finish_reason)
        if self._memory is not None and request.session_id is not None:
            # The assistant's tool calls are kept with its turn: the caller's tool results
            # (role "tool") come in the next request of the session and must follow them.
            await self._memory.append(
                request.tenant,
                request.session_id,
                [*request.messages, answer],
                turn_id=request.request_id,
            )
        yield GenerateResult(
            request_id=stamper.request_id,
            attempt=stamper.attempt,
            seq=stamper.next_seq(),
            text=text,
            model=request.model,
            finish_reason=done.finish_reason,
            usage=usage,
            tool_calls=done.tool_calls,
        )

    def _usage(
        self,
        provider: ChatProvider,
        messages: list[ChatMessage],
        params: ChatParams,
        answer: ChatMessage,
        done: ChatDone,
    ) -> Usage:
        """The call's usage (counted here when the provider reported none), priced by the
        catalogue for the provider and model that answered, and counted in the metrics."""
        usage = completed_usage(
            done.usage, provider=provider, messages=messages, params=params, answer=answer
        )
        served_by, served_model = done.provider or provider.name, done.model or params.model
        usage = self._models.priced(served_by, served_model, usage)
        if self._metrics is not None:
            self._metrics.spent(served_by, served_model, usage)
        return usage

    async def _history(self, request: GenerateRequest) -> list[ChatMessage]:
        if self._memory is None or request.session_id is None:
            return []
        return await self._memory.history(request.tenant, request.session_id)

    async def health(self) -> dict[str, bool]:
        return await health_of(self._router.providers)

    async def aclose(self) -> None:
        for provider in self._router.providers:
            await provider.aclose()
        if self._memory is not None:
            await self._memory.aclose()


def _tool_call_delta(piece: ToolCallPiece, stamper: ChunkStamper) -> ToolCallDelta:
    return ToolCallDelta(
        request_id=stamper.request_id,
        attempt=stamper.attempt,
        seq=stamper.next_seq(),
        index=piece.index,
        id=piece.id,
        name=piece.name,
        arguments=piece.arguments,
    )


async def build(
    settings: WorkerSettings, shared: Shared, metrics: WorkerMetrics | None
) -> GenerateHandler:
    chat = await loaded("chat", [chat_provider(s, shared) for s in settings.chat])
    memory = None
    if settings.memory is not None:
        memory = memory_stores.create(settings.memory.name, settings.memory.config, shared)
    return GenerateHandler(ModelRouter("chat", chat), memory, models=shared.models, metrics=metrics)
