"""What every rerank provider must do, asserted the same way for each.

A subclass sets ``model`` and provides ``provider``: ready to rerank ``DOCUMENTS`` against
``QUERY`` once (an HTTP provider over a recorded answer for exactly those documents).
"""

from __future__ import annotations

from typing import ClassVar

import pytest

from contracts.errors import ErrorCode
from providers.errors import ProviderError
from providers.rerank import RerankProvider

QUERY = "Which system keeps a log of events?"
DOCUMENTS = [
    "Bread rises with yeast.",
    "Kafka keeps an append-only log of events.",
    "Redis keeps data in memory.",
]
RELEVANT = 1


class RerankProviderConformance:
    model: ClassVar[str]

    @pytest.fixture
    def provider(self) -> RerankProvider:
        raise NotImplementedError("a conformance subclass provides `provider`")

    def test_satisfies_the_protocol(self, provider: RerankProvider) -> None:
        assert isinstance(provider, RerankProvider)
        assert self.model in provider.capabilities.models
        assert provider.capabilities.max_documents >= 1

    async def test_one_score_per_document_in_input_order(self, provider: RerankProvider) -> None:
        result = await provider.rerank(QUERY, DOCUMENTS, model=self.model, max_tokens_per_doc=None)
        assert len(result.scores) == len(DOCUMENTS)
        best = max(range(len(DOCUMENTS)), key=lambda i: result.scores[i])
        assert best == RELEVANT
        assert result.usage.prompt_tokens > 0

    async def test_an_unknown_model_is_not_found(self, provider: RerankProvider) -> None:
        with pytest.raises(ProviderError) as info:
            await provider.rerank(QUERY, DOCUMENTS, model="no-such-model", max_tokens_per_doc=None)
        assert info.value.code is ErrorCode.NOT_FOUND

    async def test_more_documents_than_one_call_takes_is_invalid_input(
        self, provider: RerankProvider
    ) -> None:
        too_many = ["x"] * (provider.capabilities.max_documents + 1)
        with pytest.raises(ProviderError) as info:
            await provider.rerank(QUERY, too_many, model=self.model, max_tokens_per_doc=None)
        assert info.value.code is ErrorCode.INVALID_INPUT
        assert str(provider.capabilities.max_documents) in info.value.detail

    async def test_max_tokens_per_doc_is_honoured_or_refused(
        self, provider: RerankProvider
    ) -> None:
        if provider.capabilities.truncates_documents:
            result = await provider.rerank(QUERY, DOCUMENTS, model=self.model, max_tokens_per_doc=4)
            assert len(result.scores) == len(DOCUMENTS)
        else:
            with pytest.raises(ProviderError) as info:
                await provider.rerank(QUERY, DOCUMENTS, model=self.model, max_tokens_per_doc=4)
            assert info.value.code is ErrorCode.INVALID_INPUT
            assert "max_tokens_per_doc" in info.value.detail
