"""A vector store on Qdrant through qdrant-client's AsyncQdrantClient, one collection each.

Serves a Qdrant server (``url``) or qdrant-client's local mode (``path`` on disk, or
``location=":memory:"``); local mode runs in-process and is meant for tests and small data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any, Final

import msgspec
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from contracts.errors import ConfigError, ErrorCode
from contracts.replies import VectorMatch
from contracts.secrets import Secret
from contracts.vectors import Metadata
from providers.errors import ProviderError
from providers.registry import parse_config
from providers.shared import Shared
from providers.vectorstores.base import VectorItem, batch_dimension

# Qdrant point ids are unsigned ints or UUIDs; a fixed namespace makes the mapping from the
# fleet's string ids deterministic, so an upsert of the same id replaces the same point.
_ID_NAMESPACE: Final = uuid.UUID("6f1c8a52-3f0e-5b8e-9d55-0c7a1e9b4f21")
_ID_FIELD: Final = "fleet_id"
_METADATA_FIELD: Final = "metadata"


class QdrantConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str | None = None  # a server, e.g. http://127.0.0.1:6333
    path: str | None = None  # local mode, persisted in this directory
    location: str | None = None  # local mode in memory: ":memory:"
    api_key: Secret | None = None
    collection_prefix: str = ""
    timeout_s: Annotated[int, msgspec.Meta(ge=1)] = 30
    # qdrant-client asks a server for its version from a background thread at construction
    # and warns on a mismatch (or when the server is down).
    check_compatibility: bool = True

    def __post_init__(self) -> None:
        chosen = [name for name in ("url", "path", "location") if getattr(self, name)]
        if len(chosen) != 1:
            raise msgspec.ValidationError(
                f"set exactly one of `url`, `path` or `location`; got {chosen or 'none'}"
            )


def point_id(item_id: str) -> str:
    """The Qdrant point id (a UUID) that stands for the fleet id ``item_id``."""
    return str(uuid.uuid5(_ID_NAMESPACE, item_id))


def _condition(key: str, value: str | int | float | bool) -> models.FieldCondition:
    if "." in key or "[" in key:
        # Qdrant reads dots and brackets as a path into nested payload.
        raise ValueError(f"filter key {key!r} may not contain '.' or '['")
    field = f"{_METADATA_FIELD}.{key}"
    if isinstance(value, float):  # MatchValue takes str, int and bool only
        return models.FieldCondition(key=field, range=models.Range(gte=value, lte=value))
    return models.FieldCondition(key=field, match=models.MatchValue(value=value))


class QdrantVectorStore:
    name = "qdrant"

    def __init__(self, config: QdrantConfig) -> None:
        self._config = config
        api_key = config.api_key.reveal() if config.api_key else None
        self._client = AsyncQdrantClient(
            url=config.url,
            path=config.path,
            location=config.location,
            api_key=api_key,
            timeout=config.timeout_s,
            check_compatibility=config.check_compatibility and config.url is not None,
        )
        self._dimensions: dict[str, int] = {}

    def collection_name(self, collection: str) -> str:
        return f"{self._config.collection_prefix}{collection}"

    async def load(self) -> None:
        with self._errors("load"):
            await self._client.get_collections()

    async def health(self) -> bool:
        try:
            await self._client.get_collections()
        except (ResponseHandlingException, UnexpectedResponse):
            return False
        return True

    async def aclose(self) -> None:
        await self._client.close()

    async def upsert(self, collection: str, items: list[VectorItem]) -> int:
        op = f"{self.name}.upsert"
        if not items:
            return 0
        dimension = batch_dimension(op, items)
        name = self.collection_name(collection)
        with self._errors("upsert"):
            existing = await self._dimension(name)
            if existing is None:
                await self._create(name, dimension)
            elif existing != dimension:
                raise _dimension_error(op, collection, dimension, existing)
            points = [
                models.PointStruct(
                    id=point_id(item.id),
                    vector=item.vector,
                    payload={_ID_FIELD: item.id, _METADATA_FIELD: dict(item.metadata)},
                )
                for item in items
            ]
            await self._client.upsert(collection_name=name, points=points, wait=True)
        return len(items)

    async def delete(self, collection: str, ids: list[str]) -> int:
        name = self.collection_name(collection)
        if not ids:
            return 0
        with self._errors("delete"):
            if await self._dimension(name) is None:
                return 0
            wanted = [point_id(i) for i in set(ids)]
            found = await self._client.retrieve(
                collection_name=name, ids=wanted, with_payload=False, with_vectors=False
            )
            if not found:
                return 0
            selector = models.PointIdsList(points=[point.id for point in found])
            await self._client.delete(collection_name=name, points_selector=selector, wait=True)
        return len(found)

    async def drop_collection(self, collection: str) -> bool:
        """Delete the collection; False when there was none."""
        name = self.collection_name(collection)
        self._dimensions.pop(name, None)
        with self._errors("drop"):
            if not await self._client.collection_exists(name):
                return False
            return await self._client.delete_collection(name)

    async def query(
        self,
        collection: str,
        vector: list[float],
        *,
        top_k: int,
        filter: Metadata | None = None,
    ) -> list[VectorMatch]:
        op = f"{self.name}.query"
        name = self.collection_name(collection)
        try:
            conditions: list[models.Condition] = [
                _condition(key, value) for key, value in (filter or {}).items()
            ]
        except ValueError as exc:
            raise ProviderError(ErrorCode.INVALID_INPUT, op, str(exc)) from exc
        with self._errors("query"):
            dimension = await self._dimension(name)
            if dimension is None:
                raise ProviderError(ErrorCode.NOT_FOUND, op, f"no collection {collection!r}")
            if dimension != len(vector):
                raise _dimension_error(op, collection, len(vector), dimension)
            response = await self._client.query_points(
                collection_name=name,
                query=vector,
                query_filter=models.Filter(must=conditions) if conditions else None,
                limit=top_k,
                with_payload=True,
            )
        return [_match(point) for point in response.points]

    async def _dimension(self, name: str) -> int | None:
        """The collection's vector size, or None when it does not exist."""
        if name in self._dimensions:
            return self._dimensions[name]
        if not await self._client.collection_exists(name):
            return None
        info = await self._client.get_collection(name)
        vectors = info.config.params.vectors
        if not isinstance(vectors, models.VectorParams):
            raise ProviderError(
                ErrorCode.INVALID_INPUT,
                f"{self.name}.query",
                f"collection {name!r} has named vectors; the fleet uses one unnamed vector",
            )
        self._dimensions[name] = vectors.size
        return vectors.size

    async def _create(self, name: str, dimension: int) -> None:
        params = models.VectorParams(size=dimension, distance=models.Distance.COSINE)
        try:
            await self._client.create_collection(name, vectors_config=params)
        except (UnexpectedResponse, ValueError):
            # Another worker created it first: fine when it has the same size.
            existing = await self._dimension(name)
            if existing is None:
                raise
            if existing != dimension:
                raise _dimension_error(f"{self.name}.upsert", name, dimension, existing) from None
            return
        self._dimensions[name] = dimension

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        op = f"{self.name}.{action}"
        try:
            yield
        except ResponseHandlingException as exc:  # transport: refused, reset, timed out
            raise ProviderError(ErrorCode.PROVIDER_DOWN, op, f"Qdrant unreachable: {exc}") from exc
        except UnexpectedResponse as exc:
            # A collection deleted behind our back: forget its cached size.
            self._dimensions.clear()
            raise ProviderError(_code_for_status(exc.status_code), op, str(exc)) from exc
        except ValueError as exc:  # local mode reports bad requests as ValueError
            self._dimensions.clear()
            raise ProviderError(ErrorCode.INVALID_INPUT, op, str(exc)) from exc


def _code_for_status(status: int | None) -> ErrorCode:
    if status == 404:
        return ErrorCode.NOT_FOUND
    if status in (401, 403):
        return ErrorCode.AUTH
    if status == 429:
        return ErrorCode.RATE_LIMIT
    if status is not None and 400 <= status < 500:
        return ErrorCode.INVALID_INPUT
    return ErrorCode.PROVIDER_DOWN


def _match(point: models.ScoredPoint) -> VectorMatch:
    payload = point.payload or {}
    return VectorMatch(
        id=str(payload.get(_ID_FIELD, point.id)),
        score=float(point.score),
        metadata=dict(payload.get(_METADATA_FIELD) or {}),
    )


def _dimension_error(op: str, collection: str, got: int, expected: int) -> ProviderError:
    return ProviderError(
        ErrorCode.INVALID_INPUT,
        op,
        f"vector of dimension {got} for collection {collection!r} of dimension {expected}",
    )


def create(config: Mapping[str, Any], shared: Shared) -> QdrantVectorStore:
    try:
        return QdrantVectorStore(parse_config("qdrant", config, QdrantConfig))
    except ValueError as exc:  # e.g. a malformed url
        raise ConfigError(f"invalid config for provider 'qdrant': {exc}") from exc
