"""The rerank handler over TEI's API (a MockTransport server that scores each text by a
table): requests split into calls of what one call takes and merged into one ranking, top_n
and return_documents honoured, usage priced, and the worker's limits refused by name."""

from __future__ import annotations

import json

import httpx
import msgspec
import pytest

from contracts.errors import ErrorCode
from contracts.replies import RerankResult
from contracts.rerank import RerankRequest
from providers.catalogue import ModelCatalogue, ModelEntry
from providers.errors import ProviderError
from providers.registry import parse_config
from providers.rerank.tei import TeiRerankConfig, TeiReranker
from providers.router import ModelRouter
from tests.unit.providers import FakeClock, FakeSleep, Replay
from workers.handlers.reply_stream import ChunkStamper
from workers.handlers.rerank import RerankHandler
from workers.metrics import WorkerMetrics
from workers.settings import RerankLimits

MODEL = "bge-reranker-base"
# What the fake TEI scores each text; the objects' texts are their rank fields as
# "field: value" lines.
SCORES = {"a": 0.1, "b": 0.9, "c": 0.5, "d": 0.7, "e": 0.3, "body: a": 0.1, "body: b": 0.9}


def scoring_tei(request: httpx.Request) -> httpx.Response:
    """TEI's answer: every text's score, best first."""
    texts = json.loads(request.content)["texts"]
    hits = sorted(
        ({"index": i, "score": SCORES[t]} for i, t in enumerate(texts)), key=lambda h: -h["score"]
    )
    return httpx.Response(200, json=hits)


DEFAULT_LIMITS = RerankLimits()


def handler_over(replay: Replay, limits: RerankLimits = DEFAULT_LIMITS) -> RerankHandler:
    config = parse_config(
        "tei",
        {"base_url": "http://tei", "models": [MODEL], "max_documents": 2},
        TeiRerankConfig,
    )
    tei = TeiReranker(config, transport=replay.transport(), sleep=FakeSleep(), clock=FakeClock())
    return RerankHandler(
        ModelRouter("rerank", [tei]),
        limits,
        WorkerMetrics("rerank"),
        models=ModelCatalogue([ModelEntry(name=MODEL, input_usd_per_mtok=0.05)]),
    )


async def run(handler: RerankHandler, request: RerankRequest) -> RerankResult:
    try:
        (result,) = [c async for c in handler.handle(request, ChunkStamper("r1", 0))]
    finally:
        await handler.aclose()
    assert isinstance(result, RerankResult)
    return result


async def test_a_request_larger_than_one_call_is_split_and_merged_best_first() -> None:
    replay = Replay().then(scoring_tei)
    request = RerankRequest(request_id="r1", model=MODEL, query="q", documents=list("abcde"))
    result = await run(handler_over(replay), request)
    assert [r.index for r in result.results] == [1, 3, 2, 4, 0]
    assert [r.relevance_score for r in result.results] == [0.9, 0.7, 0.5, 0.3, 0.1]
    assert all(r.document is None for r in result.results)
    sent = sorted(json.loads(r.content)["texts"] for r in replay.requests)
    assert sent == [["a", "b"], ["c", "d"], ["e"]]  # TEI's cap of texts a call, here 2
    assert result.usage.estimated
    assert result.usage.cost_usd == pytest.approx(result.usage.prompt_tokens * 0.05 / 1e6)


async def test_top_n_and_return_documents_of_objects_by_their_rank_fields() -> None:
    replay = Replay().then(scoring_tei)
    documents: list[str | dict[str, str]] = [
        {"title": "x", "body": "a"},
        {"title": "y", "body": "b"},
        "c",
    ]
    request = RerankRequest(
        request_id="r1",
        model=MODEL,
        query="q",
        documents=documents,
        rank_fields=["body"],
        top_n=2,
        return_documents=True,
    )
    result = await run(handler_over(replay), request)
    assert [(r.index, r.document) for r in result.results] == [
        (1, {"title": "y", "body": "b"}),
        (2, "c"),
    ]


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("documents", ["a"] * 11, "rerank_limits.max_documents"),
        ("query", "q" * 101, "rerank_limits.max_query_chars"),
    ],
)
async def test_a_request_over_the_limits_is_refused_naming_the_limit_before_any_call(
    field: str, value: object, named: str
) -> None:
    replay = Replay()
    handler = handler_over(replay, RerankLimits(max_documents=10, max_query_chars=100))
    request = msgspec.structs.replace(
        RerankRequest(request_id="r1", model=MODEL, query="q", documents=["a"]), **{field: value}
    )
    with pytest.raises(ProviderError) as info:
        await run(handler, request)
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert named in info.value.detail
    assert replay.requests == []


async def test_max_tokens_per_doc_on_an_api_without_it_is_refused() -> None:
    replay = Replay()
    request = RerankRequest(
        request_id="r1", model=MODEL, query="q", documents=["a"], max_tokens_per_doc=8
    )
    with pytest.raises(ProviderError) as info:
        await run(handler_over(replay), request)
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert "max_tokens_per_doc" in info.value.detail
    assert replay.requests == []


async def test_a_failed_call_of_a_split_request_fails_it_with_its_own_error() -> None:
    replay = Replay().then(scoring_tei).raw(401, b'{"error": "bad key"}')
    request = RerankRequest(request_id="r1", model=MODEL, query="q", documents=list("abcde"))
    with pytest.raises(ProviderError) as info:
        await run(handler_over(replay), request)
    assert info.value.code is ErrorCode.AUTH
