"""What a vector store is: upsert, delete and filtered top-k query over named collections.

Filters are equality on metadata keys, all of which must match: ``{"lang": "en"}``.
Scores are cosine similarity (higher is closer). A collection is created on first upsert
with the dimension of its first vector.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import msgspec

from contracts.errors import ErrorCode
from contracts.replies import VectorMatch
from contracts.vectors import Metadata
from providers.errors import ProviderError


class VectorItem(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    vector: list[float]
    metadata: Metadata = msgspec.field(default_factory=dict)


@runtime_checkable
class VectorStore(Protocol):
    name: str

    async def upsert(self, collection: str, items: list[VectorItem]) -> int:
        """Insert or replace items by id; returns how many were written."""
        ...

    async def delete(self, collection: str, ids: list[str]) -> int:
        """Returns how many of the ids existed and were deleted."""
        ...

    async def query(
        self,
        collection: str,
        vector: list[float],
        *,
        top_k: int,
        filter: Metadata | None = None,
    ) -> list[VectorMatch]:
        """The top_k closest items, best first; an unknown collection raises not_found."""
        ...

    async def load(self) -> None: ...

    async def health(self) -> bool: ...

    async def aclose(self) -> None: ...


def batch_dimension(op: str, items: list[VectorItem]) -> int:
    """The one vector length of an upsert batch; mixed or empty vectors are invalid input."""
    dimension = len(items[0].vector)
    if dimension == 0 or any(len(item.vector) != dimension for item in items):
        raise ProviderError(
            ErrorCode.INVALID_INPUT,
            op,
            "all vectors of one upsert must have the same, non-zero length",
        )
    return dimension
