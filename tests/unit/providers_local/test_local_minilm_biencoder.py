"""local-minilm-biencoder: the shipped MiniLM embedder ranking documents by cosine."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from providers.rerank import RerankProvider, rerank_providers
from providers.rerank.local_minilm_biencoder import BIENCODER_MODEL, LocalMiniLMBiEncoder
from tests.conformance.rerank import RerankProviderConformance

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
async def biencoder() -> AsyncIterator[LocalMiniLMBiEncoder]:
    provider = rerank_providers.create("local-minilm-biencoder", {"max_documents": 8})
    assert isinstance(provider, LocalMiniLMBiEncoder)
    await provider.load()
    yield provider
    await provider.aclose()


async def test_scores_are_cosines_and_tokens_are_counted(biencoder: LocalMiniLMBiEncoder) -> None:
    same = await biencoder.rerank(
        "a cat on a mat",
        ["a cat on a mat", "tax law"],
        model=BIENCODER_MODEL,
        max_tokens_per_doc=None,
    )
    assert same.scores[0] == pytest.approx(1.0, abs=1e-4)
    assert -1.0 <= same.scores[1] < 0.5
    # [CLS] and [SEP] around each text: 7 + 7 + 4 tokens.
    assert same.usage.prompt_tokens == 18
    assert not same.usage.estimated


async def test_max_tokens_per_doc_cuts_each_document(biencoder: LocalMiniLMBiEncoder) -> None:
    document = "bread and butter. " + "The Kafka broker appends events to its log. " * 4
    query = "Where are events appended?"
    whole = await biencoder.rerank(
        query, [document], model=BIENCODER_MODEL, max_tokens_per_doc=None
    )
    cut = await biencoder.rerank(query, [document], model=BIENCODER_MODEL, max_tokens_per_doc=3)
    # Cut to "bread and butter", the document no longer speaks of events.
    assert cut.scores[0] < whole.scores[0] - 0.2
    assert cut.usage.prompt_tokens < whole.usage.prompt_tokens


async def test_kept_document_vectors_change_no_score(biencoder: LocalMiniLMBiEncoder) -> None:
    """The same scores and tokens with the document cache (the fixture's, on by default) as
    without it, whether every document is new, some are kept, or all are."""
    uncached = rerank_providers.create(
        "local-minilm-biencoder", {"max_documents": 8, "document_cache_mib": 0}
    )
    await uncached.load()
    query = "Which harbour changed its ferry schedule?"
    documents = [
        "The harbour's ferries leave an hour earlier from Monday.",
        "Rain is expected over the hills tonight.",
        "A new bakery opened beside the station.",
        "The ferry timetable for the north harbour has changed.",
        "Tax forms are due at the end of the month.",
        "Harbour works close the east pier for a week.",
    ]
    try:
        # New documents; then half of them kept and half new, in a new order; then all kept.
        for asked, cut in ((documents[::2], None), (documents[::-1], None), (documents, None),
                           (documents, 6), (documents, 6)):  # fmt: skip
            kept = await biencoder.rerank(
                query, asked, model=BIENCODER_MODEL, max_tokens_per_doc=cut
            )
            fresh = await uncached.rerank(
                query, asked, model=BIENCODER_MODEL, max_tokens_per_doc=cut
            )
            assert kept == fresh
    finally:
        await uncached.aclose()


class TestConformance(RerankProviderConformance):
    model = BIENCODER_MODEL

    @pytest.fixture
    def provider(self, biencoder: LocalMiniLMBiEncoder) -> RerankProvider:
        return biencoder
