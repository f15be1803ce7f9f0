"""What an embedding provider is."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import msgspec

from contracts.usage import Usage


class EmbeddingCapabilities(msgspec.Struct, frozen=True, kw_only=True):
    models: tuple[str, ...]
    dimension: int
    # Texts per call the provider accepts (the embed worker's batches never exceed it).
    max_batch: int = 256
    max_input_tokens: int | None = None


class Embeddings(msgspec.Struct, frozen=True, kw_only=True):
    vectors: list[list[float]]  # one per input text, in input order, L2-normalised
    model: str
    usage: Usage = Usage()


@runtime_checkable
class EmbeddingProvider(Protocol):
    name: str

    @property
    def capabilities(self) -> EmbeddingCapabilities: ...

    async def embed(self, texts: list[str], *, model: str) -> Embeddings: ...

    async def load(self) -> None: ...

    async def health(self) -> bool: ...

    async def aclose(self) -> None: ...
