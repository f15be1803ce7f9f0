"""The vectors handler: upsert (embedding texts first), delete and query one store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, nullcontext
from typing import Final

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from contracts.codec import VectorsRequest
from contracts.errors import ErrorCode
from contracts.names import Lane
from contracts.replies import ReplyChunk, VectorResult
from contracts.vectors import VectorDeleteRequest, VectorQueryRequest, VectorUpsertRequest
from providers.catalogue import NO_MODELS, ModelCatalogue
from providers.embeddings.base import EmbeddingProvider
from providers.errors import ProviderError
from providers.router import ModelRouter
from providers.shared import Shared
from providers.vectorstores import vector_stores
from providers.vectorstores.base import VectorItem, VectorStore
from transport.tracing import failure_typed_span, tracing_configured
from workers.handlers.provider_calls import ProviderCalls
from workers.handlers.providers import embedders, health_of, loaded
from workers.handlers.reply_stream import ChunkStamper
from workers.metrics import WorkerMetrics
from workers.settings import WorkerSettings

_SCOPE: Final = "ai_job_fleet.workers"
_UNTRACED: Final = nullcontext(trace.INVALID_SPAN)
_OPERATIONS: Final[dict[type, str]] = {
    VectorUpsertRequest: "upsert",
    VectorDeleteRequest: "delete",
    VectorQueryRequest: "query",
}


def _outcome(result: VectorResult) -> dict[str, AttributeValue]:
    """What the store did, for the span: the rows a query returned (the database
    conventions' name), or those written or deleted."""
    if result.matches is not None:
        return {"db.response.returned_rows": len(result.matches)}
    return {"fleet.vectors.upserted": result.upserted, "fleet.vectors.deleted": result.deleted}


def tenant_collection(tenant: str, collection: str) -> str:
    """The store's name for one tenant's collection: tenants never share one, and the
    tenant's length makes the name unambiguous ("acme" + "docs" -> "t4_acme_docs")."""
    return f"t{len(tenant)}_{tenant}_{collection}"


class VectorsHandler:
    kind = "vectors"

    def __init__(
        self,
        store: VectorStore,
        embedders: ModelRouter[EmbeddingProvider],
        default_embed_model: str | None,
        *,
        models: ModelCatalogue = NO_MODELS,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._store = store
        self._embedders = embedders
        self._default_embed_model = default_embed_model
        self._calls = ProviderCalls(models, metrics)
        self._traced = tracing_configured()  # asked once: built after telemetry is set up

    async def handle(
        self, request: VectorsRequest, stamper: ChunkStamper, *, lane: Lane = "interactive"
    ) -> AsyncIterator[ReplyChunk]:
        # Both lanes alike here: the worker's lane gate is this kind's priority.
        if request.store is not None and request.store != self._store.name:
            raise ProviderError(
                ErrorCode.NOT_FOUND,
                "vectors.route",
                f"vector store {request.store!r} is not configured on this worker; "
                f"configured: {self._store.name}",
            )
        with self._span(request) as span:
            result = await self._run(request, stamper)
            span.set_attributes(_outcome(result))
        yield result

    async def _run(self, request: VectorsRequest, stamper: ChunkStamper) -> VectorResult:
        store, collection = self._store, tenant_collection(request.tenant, request.collection)
        if isinstance(request, VectorUpsertRequest):
            items = await self._items(request)
            async with self._calls.store(store.name, "upsert"):
                written = await store.upsert(collection, items)
            return VectorResult(**stamper.head(), collection=request.collection, upserted=written)
        elif isinstance(request, VectorDeleteRequest):
            async with self._calls.store(store.name, "delete"):
                deleted = await store.delete(collection, request.ids)
            return VectorResult(**stamper.head(), collection=request.collection, deleted=deleted)
        else:
            vector = request.vector
            if vector is None:
                assert request.text is not None  # the contract demands one of the two
                vector = (await self._embed([request.text], request.embed_model))[0]
            async with self._calls.store(store.name, "query"):
                matches = await store.query(
                    collection, vector, top_k=request.top_k, filter=request.filter
                )
            return VectorResult(**stamper.head(), collection=request.collection, matches=matches)

    def _span(self, request: VectorsRequest) -> AbstractContextManager[trace.Span]:
        """The job's own span around its embedding and store calls, named and described by
        the database conventions: ``upsert docs``, ``query docs``."""
        if not self._traced:
            return _UNTRACED
        operation = _OPERATIONS[type(request)]
        attributes: dict[str, AttributeValue] = {
            "db.operation.name": operation,
            "db.collection.name": request.collection,
            "fleet.vector_store": self._store.name,
        }
        if isinstance(request, VectorUpsertRequest):
            attributes["db.operation.batch.size"] = len(request.records)
        elif isinstance(request, VectorDeleteRequest):
            attributes["db.operation.batch.size"] = len(request.ids)
        return failure_typed_span(
            _SCOPE, f"{operation} {request.collection}", SpanKind.INTERNAL, attributes
        )

    async def _items(self, request: VectorUpsertRequest) -> list[VectorItem]:
        to_embed = [r.text for r in request.records if r.vector is None and r.text is not None]
        embedded = iter(await self._embed(to_embed, request.embed_model) if to_embed else [])
        return [
            VectorItem(
                id=r.id,
                vector=r.vector if r.vector is not None else next(embedded),
                metadata=r.metadata,
            )
            for r in request.records
        ]

    async def _embed(self, texts: list[str], model: str | None) -> list[list[float]]:
        chosen = model or self._default_embed_model
        if chosen is None:
            raise ProviderError(
                ErrorCode.INVALID_INPUT,
                "vectors.embed",
                "records without vectors need `embed_model` (no default embedder configured)",
            )
        provider = self._embedders.resolve(chosen)
        result = await self._calls.embed(provider, texts, chosen)
        self._calls.settle(provider.name, chosen, result.usage)
        return result.vectors

    async def health(self) -> dict[str, bool]:
        return await health_of([self._store, *self._embedders.providers])

    async def aclose(self) -> None:
        await self._store.aclose()
        for provider in self._embedders.providers:
            await provider.aclose()


async def build(
    settings: WorkerSettings, shared: Shared, metrics: WorkerMetrics | None
) -> VectorsHandler:
    spec = settings.vector_store
    (store,) = await loaded("vector store", [vector_stores.create(spec.name, spec.config, shared)])
    embedding = await embedders(settings, shared)
    default_model = embedding.models[0] if embedding.models else None
    return VectorsHandler(store, embedding, default_model, models=shared.models, metrics=metrics)
