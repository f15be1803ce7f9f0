"""The rerank handler: a request held to the worker's limits, its documents scored in calls
of what the provider takes, and the scores merged into one ranking, best first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Final

from contracts.errors import ErrorCode
from contracts.names import Lane
from contracts.replies import RankedDocument, ReplyChunk, RerankResult
from contracts.rerank import RerankRequest, rank_texts
from contracts.usage import Usage
from providers.catalogue import NO_MODELS, ModelCatalogue
from providers.errors import ProviderError
from providers.rerank.base import RerankProvider, Scores
from providers.router import ModelRouter
from providers.shared import Shared
from workers.handlers.provider_calls import ProviderCalls
from workers.handlers.providers import RoutedHandler, rerankers
from workers.handlers.reply_stream import ChunkStamper
from workers.metrics import WorkerMetrics
from workers.settings import RerankLimits, WorkerSettings

# Calls of one split request in flight at once: an HTTP reranker answers a large request
# sooner, without one request's 300 calls crowding out every other job's.
CALLS_AT_ONCE: Final = 4


def check_limits(request: RerankRequest, limits: RerankLimits) -> None:
    """Refuse, naming the limit, a request larger than the worker takes."""
    op = "rerank.limits"
    if len(request.documents) > limits.max_documents:
        raise ProviderError(
            ErrorCode.INVALID_INPUT,
            op,
            f"{len(request.documents)} documents; at most {limits.max_documents} a request "
            "(rerank_limits.max_documents)",
        )
    if len(request.query) > limits.max_query_chars:
        raise ProviderError(
            ErrorCode.INVALID_INPUT,
            op,
            f"the query is {len(request.query)} characters; at most {limits.max_query_chars} "
            "(rerank_limits.max_query_chars)",
        )


class RerankHandler(RoutedHandler[RerankProvider]):
    kind = "rerank"

    def __init__(
        self,
        router: ModelRouter[RerankProvider],
        limits: RerankLimits,
        metrics: WorkerMetrics | None = None,
        *,
        models: ModelCatalogue = NO_MODELS,
    ) -> None:
        super().__init__(router)
        self._limits = limits
        self._calls = ProviderCalls(models, metrics)

    async def handle(
        self, request: RerankRequest, stamper: ChunkStamper, *, lane: Lane = "interactive"
    ) -> AsyncIterator[ReplyChunk]:
        # Both lanes alike here: the worker's lane gate is this kind's priority.
        check_limits(request, self._limits)
        provider = self._router.resolve(request.model, request.provider)
        scores = await self._scores(provider, request)
        usage = Usage(
            prompt_tokens=sum(s.usage.prompt_tokens for s in scores),
            estimated=any(s.usage.estimated for s in scores),
        )
        merged = [score for part in scores for score in part.scores]
        # Best first; equal scores keep their input order (the sort is stable).
        order = sorted(range(len(merged)), key=lambda i: -merged[i])[: request.top_n]
        yield RerankResult(
            **stamper.head(),
            model=request.model,
            results=[
                RankedDocument(
                    index=i,
                    relevance_score=merged[i],
                    document=request.documents[i] if request.return_documents else None,
                )
                for i in order
            ],
            usage=self._calls.settle(provider.name, request.model, usage),
        )

    async def _scores(self, provider: RerankProvider, request: RerankRequest) -> list[Scores]:
        """Each call's scores, in document order: the documents in runs of what one call
        takes (the scores of a cross-encoder or a bi-encoder do not depend on the
        documents beside them, so runs merge by score)."""
        texts = rank_texts(request.documents, request.rank_fields)
        size = provider.capabilities.max_documents
        room = asyncio.Semaphore(CALLS_AT_ONCE)

        async def call(documents: list[str]) -> Scores:
            async with room:
                return await self._calls.rerank(
                    provider,
                    request.query,
                    documents,
                    model=request.model,
                    max_tokens_per_doc=request.max_tokens_per_doc,
                )

        runs = [texts[start : start + size] for start in range(0, len(texts), size)]
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(call(run)) for run in runs]
        except ExceptionGroup as failed:
            # The first failure, as itself: the failure table reads its type and code (the
            # other calls were cancelled by it).
            raise failed.exceptions[0] from None
        return [task.result() for task in tasks]


async def build(
    settings: WorkerSettings, shared: Shared, metrics: WorkerMetrics | None
) -> RerankHandler:
    return RerankHandler(
        await rerankers(settings, shared), settings.rerank_limits, metrics, models=shared.models
    )
