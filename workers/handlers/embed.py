"""The embed handler: each request's texts go through the shared dynamic batcher."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import numpy as np

from contracts.embed import EmbedRequest
from contracts.errors import ErrorCode
from contracts.names import Lane
from contracts.replies import EmbedResult, ReplyChunk
from contracts.tokens import estimate_tokens
from contracts.usage import Usage
from providers.catalogue import NO_MODELS, ModelCatalogue
from providers.embeddings.base import EmbeddingProvider, FloatRows
from providers.errors import ProviderError
from providers.router import ModelRouter
from providers.shared import Shared
from workers.handlers.embed_batching import DynamicBatcher
from workers.handlers.provider_calls import ProviderCalls
from workers.handlers.providers import RoutedHandler, embedders
from workers.handlers.reply_stream import ChunkStamper
from workers.metrics import WorkerMetrics
from workers.settings import EmbedBatching, WorkerSettings


def shortened(rows: FloatRows, dimensions: int, model: str) -> FloatRows:
    """The first ``dimensions`` numbers of each vector, scaled back to unit length (what
    OpenAI's ``dimensions`` does); asking for more than the model makes is refused."""
    if dimensions > rows.shape[1]:
        raise ProviderError(
            ErrorCode.INVALID_INPUT,
            "embed.dimensions",
            f"dimensions={dimensions}, but {model!r} makes vectors of {rows.shape[1]}",
        )
    cut = rows[:, :dimensions]
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    scaled: FloatRows = np.divide(cut, norms, out=np.zeros_like(cut), where=norms > 0)
    return scaled


class EmbedHandler(RoutedHandler[EmbeddingProvider]):
    kind = "embed"

    def __init__(
        self,
        router: ModelRouter[EmbeddingProvider],
        batching: EmbedBatching,
        metrics: WorkerMetrics | None = None,
        *,
        models: ModelCatalogue = NO_MODELS,
    ) -> None:
        super().__init__(router)
        self._batching = batching
        self._metrics = metrics
        self._calls = ProviderCalls(models, metrics)
        self._batchers: dict[tuple[str, str], DynamicBatcher[FloatRows]] = {}

    async def handle(
        self, request: EmbedRequest, stamper: ChunkStamper, *, lane: Lane = "interactive"
    ) -> AsyncIterator[ReplyChunk]:
        provider = self._router.resolve(request.model, request.provider)
        batcher = self._batcher(provider, request.model)
        rows = await batcher.embed(request.texts, lane=lane)
        if request.dimensions is not None:
            rows = shortened(rows, request.dimensions, request.model)
        # Usage is estimated per request: the model bills whole batches shared by requests.
        tokens = sum(estimate_tokens(t) for t in request.texts)
        estimate = Usage(prompt_tokens=tokens, estimated=True)
        usage = self._calls.settle(provider.name, request.model, estimate)
        packed = request.encoding_format == "base64"
        yield EmbedResult(
            **stamper.head(),
            model=request.model,
            dimension=rows.shape[1],
            vectors=[] if packed else rows.tolist(),
            # One copy, array to bytes: float32 rows are "<f4" already on every host we run.
            vectors_float32=rows.astype("<f4", copy=False).tobytes() if packed else None,
            custom_ids=request.custom_ids,
            usage=usage,
        )

    def _batcher(self, provider: EmbeddingProvider, model: str) -> DynamicBatcher[FloatRows]:
        key = (provider.name, model)
        batcher = self._batchers.get(key)
        if batcher is None:
            max_texts = min(self._batching.max_texts, provider.capabilities.max_batch)
            limits = msgspec.structs.replace(self._batching, max_texts=max_texts)

            async def embed(texts: list[str]) -> FloatRows:
                return (await self._calls.embed(provider, texts, model)).rows

            batcher = DynamicBatcher(embed, limits, self._observe_batch)
            self._batchers[key] = batcher
        return batcher

    def _observe_batch(self, size: int) -> None:
        if self._metrics is not None:
            self._metrics.batch_size.labels(self.kind).observe(size)

    async def aclose(self) -> None:
        for batcher in self._batchers.values():
            await batcher.aclose()
        await super().aclose()


async def build(
    settings: WorkerSettings, shared: Shared, metrics: WorkerMetrics | None
) -> EmbedHandler:
    return EmbedHandler(
        await embedders(settings, shared), settings.embed_batching, metrics, models=shared.models
    )
