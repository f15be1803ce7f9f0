"""The rerank APIs over HTTP (TEI, Cohere v2, Jina v1 and vLLM) against recorded answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest

from contracts.errors import ConfigError, ErrorCode
from providers.errors import ProviderError
from providers.registry import parse_config
from providers.rerank import RerankProvider, rerank_providers
from providers.rerank.cohere import CohereRerankConfig, CohereReranker
from providers.rerank.http_rerank import HttpRerankConfig, HttpReranker
from providers.rerank.jina import JinaRerankConfig, JinaReranker
from providers.rerank.tei import TeiRerankConfig, TeiReranker
from tests.conformance.rerank import DOCUMENTS, QUERY, RerankProviderConformance
from tests.unit.providers import API_KEY, FakeClock, FakeSleep, Replay

MODEL = "reranker"


def make(
    provider: type[HttpReranker[Any]],
    config: type[HttpRerankConfig],
    replay: Replay,
    **overrides: Any,
) -> Any:
    raw: dict[str, Any] = {"api_key": API_KEY, "models": [MODEL], **overrides}
    if "base_url" not in raw and config is TeiRerankConfig:
        raw["base_url"] = "http://tei:8080"
    parsed = parse_config(provider.__name__, raw, config)
    return provider(parsed, transport=replay.transport(), sleep=FakeSleep(), clock=FakeClock())


async def rerank(reranker: HttpReranker[Any], **options: Any) -> Any:
    try:
        return await reranker.rerank(
            QUERY, DOCUMENTS, model=MODEL, max_tokens_per_doc=options.get("max_tokens_per_doc")
        )
    finally:
        await reranker.aclose()


async def test_tei_scores_come_back_in_input_order_with_usage_estimated() -> None:
    replay = Replay().json(200, "tei/rerank_handwritten.json")
    result = await rerank(make(TeiReranker, TeiRerankConfig, replay))
    assert result.scores == pytest.approx([0.0003, 0.9976, 0.0417])
    assert result.usage.estimated
    assert result.usage.prompt_tokens > 0
    request = replay.requests[0]
    assert str(request.url) == "http://tei:8080/rerank"
    assert json.loads(request.content) == {"query": QUERY, "texts": DOCUMENTS, "truncate": True}


async def test_cohere_v2_sends_max_tokens_per_doc_and_asks_for_every_score() -> None:
    replay = Replay().json(200, "cohere/rerank_v2_handwritten.json")
    reranker = make(CohereReranker, CohereRerankConfig, replay)
    result = await rerank(reranker, max_tokens_per_doc=64)
    assert result.scores == pytest.approx([0.0112, 0.9990711, 0.32713068])
    assert result.usage.estimated  # Cohere bills search units, not tokens
    request = replay.requests[0]
    assert str(request.url) == "https://api.cohere.com/v2/rerank"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert json.loads(request.content) == {
        "model": MODEL,
        "query": QUERY,
        "documents": DOCUMENTS,
        "top_n": 3,
        "max_tokens_per_doc": 64,
    }


@pytest.mark.parametrize(
    ("fixture", "base_url", "tokens"),
    [
        ("jina/rerank_handwritten.json", "https://api.jina.ai/v1", 38),
        ("vllm/rerank_handwritten.json", "http://vllm:8000/v1", 41),
    ],
)
async def test_jina_and_vllm_answers_give_their_token_counts(
    fixture: str, base_url: str, tokens: int
) -> None:
    replay = Replay().json(200, fixture)
    result = await rerank(make(JinaReranker, JinaRerankConfig, replay, base_url=base_url))
    assert max(range(3), key=lambda i: result.scores[i]) == 1
    assert result.usage.prompt_tokens == tokens
    assert not result.usage.estimated
    request = replay.requests[0]
    assert str(request.url) == f"{base_url}/rerank"
    body = json.loads(request.content)
    assert body["top_n"] == 3
    assert body["return_documents"] is False


async def test_an_answer_missing_a_document_is_a_typed_unexpected_response() -> None:
    body = b'[{"index": 0, "score": 0.5}, {"index": 0, "score": 0.4}, {"index": 2, "score": 0.1}]'
    replay = Replay().raw(200, body)
    with pytest.raises(ProviderError) as info:
        await rerank(make(TeiReranker, TeiRerankConfig, replay))
    assert info.value.code is ErrorCode.UNEXPECTED_RESPONSE
    assert "0..2" in info.value.detail


async def test_a_400_from_cohere_is_invalid_input_and_not_retried() -> None:
    replay = Replay().json(400, "cohere/error_400_too_many_documents_handwritten.json")
    with pytest.raises(ProviderError) as info:
        await rerank(make(CohereReranker, CohereRerankConfig, replay))
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert len(replay.requests) == 1


async def test_a_500_is_retried_then_provider_down() -> None:
    replay = Replay().json(500, "openai/error_500.json")
    reranker = make(JinaReranker, JinaRerankConfig, replay, retry={"max_attempts": 2})
    with pytest.raises(ProviderError) as info:
        await rerank(reranker)
    assert info.value.code is ErrorCode.PROVIDER_DOWN
    assert len(replay.requests) == 2


async def test_registered_by_name() -> None:
    for name, kind in (("tei", TeiReranker), ("cohere", CohereReranker), ("jina", JinaReranker)):
        config: dict[str, Any] = {"models": [MODEL], "base_url": "http://x"}
        provider = rerank_providers.create(name, config)
        try:
            assert isinstance(provider, kind)
            assert isinstance(provider, RerankProvider)
        finally:
            await provider.aclose()
    with pytest.raises(ConfigError, match="base_url"):
        rerank_providers.create("tei", {"models": [MODEL]})


class _HttpConformance(RerankProviderConformance):
    model = MODEL
    provider_type: ClassVar[type[HttpReranker[Any]]]
    config_type: ClassVar[type[HttpRerankConfig]]
    fixture: ClassVar[str]

    @pytest.fixture
    async def provider(self) -> AsyncIterator[RerankProvider]:
        reranker = make(self.provider_type, self.config_type, Replay().json(200, self.fixture))
        yield reranker
        await reranker.aclose()


class TestTeiConformance(_HttpConformance):
    provider_type = TeiReranker
    config_type = TeiRerankConfig
    fixture = "tei/rerank_handwritten.json"


class TestCohereConformance(_HttpConformance):
    provider_type = CohereReranker
    config_type = CohereRerankConfig
    fixture = "cohere/rerank_v2_handwritten.json"


class TestJinaConformance(_HttpConformance):
    provider_type = JinaReranker
    config_type = JinaRerankConfig
    fixture = "jina/rerank_handwritten.json"
