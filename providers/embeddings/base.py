"""What an embedding provider is."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import msgspec
import numpy as np
import numpy.typing as npt

from contracts.usage import Usage

FloatRows = npt.NDArray[np.float32]
_NO_USAGE = Usage()  # frozen: one shared default


class EmbeddingCapabilities(msgspec.Struct, frozen=True, kw_only=True):
    models: tuple[str, ...]
    dimension: int
    # Texts per call the provider accepts (the embed worker's batches never exceed it).
    max_batch: int = 256
    max_input_tokens: int | None = None


class Embeddings:
    """One call's vectors, one per input text, in input order, L2-normalised, in the form the
    provider made them: lists of floats (an API's JSON) or an (n, dimension) float32 array
    (a local model). ``vectors`` and ``rows`` make the other form on first use, so the embed
    worker packs a local model's array into float32 bytes without a round trip through
    Python floats (for 64 vectors of 384, two conversions of about 0.7 ms each)."""

    __slots__ = ("_rows", "_vectors", "model", "usage")

    def __init__(
        self,
        *,
        model: str,
        vectors: list[list[float]] | None = None,
        rows: FloatRows | None = None,
        usage: Usage = _NO_USAGE,
    ) -> None:
        if (vectors is None) == (rows is None):
            raise TypeError("Embeddings takes either vectors or rows")
        self._vectors = vectors
        self._rows = rows
        self.model = model
        self.usage = usage

    @property
    def vectors(self) -> list[list[float]]:
        if self._vectors is None:
            assert self._rows is not None
            self._vectors = self._rows.tolist()
        return self._vectors

    @property
    def rows(self) -> FloatRows:
        if self._rows is None:
            assert self._vectors is not None
            self._rows = (
                np.asarray(self._vectors, dtype=np.float32)
                if self._vectors
                else np.empty((0, 0), dtype=np.float32)
            )
        return self._rows


@runtime_checkable
class EmbeddingProvider(Protocol):
    name: str

    @property
    def capabilities(self) -> EmbeddingCapabilities: ...

    async def embed(self, texts: list[str], *, model: str) -> Embeddings: ...

    async def load(self) -> None: ...

    async def health(self) -> bool: ...

    async def aclose(self) -> None: ...
