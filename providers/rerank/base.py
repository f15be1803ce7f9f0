"""What a rerank provider is: it scores documents against a query, one score per document
in input order; the rerank handler sorts them, cuts them to top_n and splits requests
larger than one call takes."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import msgspec

from contracts.usage import Usage

_NO_USAGE = Usage()  # frozen: one shared default


class RerankCapabilities(msgspec.Struct, frozen=True, kw_only=True):
    models: tuple[str, ...]
    # Documents one call takes: the handler splits larger requests into calls of this many
    # and merges their scores (TEI takes 32 texts a call by default).
    max_documents: int
    # Whether a call can cut each document to `max_tokens_per_doc` tokens; a request that
    # sets it is refused (invalid_input) by a provider that cannot.
    truncates_documents: bool


class Scores(msgspec.Struct, frozen=True, kw_only=True):
    """One call's relevance scores, one per document in input order (higher: more
    relevant), and what the call used."""

    scores: list[float]
    usage: Usage = _NO_USAGE


@runtime_checkable
class RerankProvider(Protocol):
    name: str

    @property
    def capabilities(self) -> RerankCapabilities: ...

    async def rerank(
        self, query: str, documents: list[str], *, model: str, max_tokens_per_doc: int | None
    ) -> Scores: ...

    async def load(self) -> None: ...

    async def health(self) -> bool: ...

    async def aclose(self) -> None: ...
