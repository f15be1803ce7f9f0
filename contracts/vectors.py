"""Vector store requests: upsert, delete and query against a named collection."""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts.envelope import Name, Request
from contracts.strict import StrictStruct

Metadata = dict[str, str | int | float | bool]


class VectorRecord(StrictStruct, frozen=True):
    id: str
    # Either a vector, or a text the worker embeds first.
    vector: list[float] | None = None
    text: str | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.vector is None and self.text is None:
            raise msgspec.ValidationError(f"record {self.id!r} needs a `vector` or a `text`")


class VectorUpsertRequest(Request, frozen=True, kw_only=True, tag="vector_upsert"):
    collection: Name
    records: Annotated[list[VectorRecord], msgspec.Meta(min_length=1)]
    store: Name | None = None
    embed_model: Name | None = None


class VectorDeleteRequest(Request, frozen=True, kw_only=True, tag="vector_delete"):
    collection: Name
    ids: Annotated[list[str], msgspec.Meta(min_length=1)]
    store: Name | None = None


class VectorQueryRequest(Request, frozen=True, kw_only=True, tag="vector_query"):
    collection: Name
    vector: list[float] | None = None
    text: str | None = None
    top_k: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    # Equality on metadata keys; every key must match.
    filter: Metadata | None = None
    store: Name | None = None
    embed_model: Name | None = None

    def __post_init__(self) -> None:
        if (self.vector is None) == (self.text is None):
            raise msgspec.ValidationError("exactly one of `vector` or `text` must be set")
