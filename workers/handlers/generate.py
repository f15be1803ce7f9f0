"""The generate handler: memory in, streamed deltas out, new turns saved, final result."""

from __future__ import annotations

from collections.abc import AsyncIterator

from contracts.errors import ErrorCode
from contracts.generate import ChatMessage, GenerateRequest, chat_options
from contracts.names import Lane
from contracts.replies import GenerateResult, ReplyChunk, ToolCallDelta
from providers.catalogue import NO_MODELS, ModelCatalogue
from providers.chat.base import ChatDone, ChatParams, ChatProvider, TextPiece, ToolCallPiece
from providers.errors import ProviderError
from providers.memory import memory_stores
from providers.memory.base import MemoryStore
from providers.router import ModelRouter
from providers.shared import Shared
from workers.handlers.images import ImageInliner, image_inliner
from workers.handlers.provider_calls import ProviderCalls
from workers.handlers.providers import RoutedHandler, chat_provider, loaded
from workers.handlers.reply_stream import ChunkStamper
from workers.handlers.structured_output import output_check
from workers.metrics import WorkerMetrics
from workers.settings import CallerUrls, WorkerSettings


class GenerateHandler(RoutedHandler[ChatProvider]):
    kind = "generate"

    def __init__(
        self,
        router: ModelRouter[ChatProvider],
        memory: MemoryStore | None = None,
        *,
        models: ModelCatalogue = NO_MODELS,
        metrics: WorkerMetrics | None = None,
        images: ImageInliner | None = None,
    ) -> None:
        super().__init__(router)
        self._memory = memory
        self._calls = ProviderCalls(models, metrics)
        self._images = images or image_inliner(CallerUrls())

    async def handle(
        self, request: GenerateRequest, stamper: ChunkStamper, *, lane: Lane = "interactive"
    ) -> AsyncIterator[ReplyChunk]:
        provider = self._router.resolve(request.model, request.provider)
        # A schema that is not one is refused here, before the model is called.
        check = output_check(request.response_format)
        messages = [*await self._history(request), *request.messages]
        params = ChatParams(model=request.model, lane=lane, **chat_options(request))
        if provider.capabilities.for_model(request.model).vision:
            # A provider without vision refuses images itself, before anything is fetched.
            messages = await self._images.inline(messages)
        pieces: list[str] = []
        done: ChatDone | None = None
        async with self._calls.chat(provider, messages, params) as call:
            async for event in call.events:
                if isinstance(event, TextPiece):
                    pieces.append(event.text)
                    if request.stream:
                        yield stamper.delta(event.text)
                elif isinstance(event, ToolCallPiece):
                    if request.stream:
                        yield _tool_call_delta(event, stamper)
                else:
                    done = event
            text = "".join(pieces)
            done = call.finish(done, text)
        if check is not None and not done.tool_calls:
            # Before the turn is saved: an answer of the wrong shape is not kept either.
            check.verify(text, done.finish_reason)
        if self._memory is not None and request.session_id is not None:
            # The assistant's tool calls are kept with its turn: the caller's tool results
            # (role "tool") come in the next request of the session and must follow them.
            answer = ChatMessage(role="assistant", content=text, tool_calls=done.tool_calls)
            await self._memory.append(
                request.tenant,
                request.session_id,
                [*request.messages, answer],
                turn_id=request.request_id,
            )
        yield GenerateResult(
            **stamper.head(),
            text=text,
            # Who answered: a fallback chain's substitute names itself (ChatDone.model).
            model=done.model or request.model,
            finish_reason=done.finish_reason,
            usage=done.usage,
            tool_calls=done.tool_calls,
        )

    async def _history(self, request: GenerateRequest) -> list[ChatMessage]:
        if request.session_id is None:
            return []
        if self._memory is None:
            # Answered without its history, and its turns not kept, the session would be
            # silently lost: refused before the model is called.
            raise ProviderError(
                ErrorCode.INVALID_INPUT,
                "generate.memory",
                "session_id needs conversation memory, and this worker has none "
                "(its `memory` setting is unset): leave session_id out or send the request "
                "to a worker with memory",
            )
        return await self._memory.history(request.tenant, request.session_id)

    async def aclose(self) -> None:
        await super().aclose()
        if self._memory is not None:
            await self._memory.aclose()
        await self._images.aclose()


def _tool_call_delta(piece: ToolCallPiece, stamper: ChunkStamper) -> ToolCallDelta:
    return ToolCallDelta(
        **stamper.head(), index=piece.index, id=piece.id, name=piece.name, arguments=piece.arguments
    )


async def build(
    settings: WorkerSettings, shared: Shared, metrics: WorkerMetrics | None
) -> GenerateHandler:
    chat = await loaded("chat", [chat_provider(s, shared) for s in settings.chat])
    memory = None
    if settings.memory is not None:
        memory = memory_stores.create(settings.memory.name, settings.memory.config, shared)
    return GenerateHandler(
        ModelRouter("chat", chat),
        memory,
        models=shared.models,
        metrics=metrics,
        images=image_inliner(settings.caller_urls),
    )
