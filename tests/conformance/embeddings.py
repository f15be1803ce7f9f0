"""What every embeddings provider must do, asserted the same way for each.

A subclass sets ``model`` and provides ``provider``: ready to embed ``TEXTS`` once (an HTTP
provider over a recorded response for exactly those texts).
"""

from __future__ import annotations

from typing import ClassVar

import pytest

from contracts.errors import ErrorCode
from providers.embeddings import EmbeddingProvider
from providers.errors import ProviderError

TEXTS = ["first", "second", "third"]


class EmbeddingProviderConformance:
    model: ClassVar[str]

    @pytest.fixture
    def provider(self) -> EmbeddingProvider:
        raise NotImplementedError("a conformance subclass provides `provider`")

    def test_satisfies_the_protocol(self, provider: EmbeddingProvider) -> None:
        assert isinstance(provider, EmbeddingProvider)
        assert self.model in provider.capabilities.models
        assert provider.capabilities.dimension > 0

    async def test_one_vector_per_text_in_order_of_the_dimension(
        self, provider: EmbeddingProvider
    ) -> None:
        result = await provider.embed(TEXTS, model=self.model)
        assert len(result.vectors) == len(TEXTS)
        assert {len(v) for v in result.vectors} == {provider.capabilities.dimension}
        assert len({tuple(v) for v in result.vectors}) == len(TEXTS)  # distinct texts differ
        assert result.model == self.model
        assert result.usage.input_tokens > 0

    async def test_an_unknown_model_is_not_found(self, provider: EmbeddingProvider) -> None:
        with pytest.raises(ProviderError) as info:
            await provider.embed(TEXTS, model="no-such-model")
        assert info.value.code is ErrorCode.NOT_FOUND

    async def test_more_texts_than_one_call_takes_is_invalid_input(
        self, provider: EmbeddingProvider
    ) -> None:
        too_many = ["x"] * (provider.capabilities.max_batch + 1)
        with pytest.raises(ProviderError) as info:
            await provider.embed(too_many, model=self.model)
        assert info.value.code is ErrorCode.INVALID_INPUT
