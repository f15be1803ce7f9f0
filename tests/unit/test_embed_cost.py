"""The embed result's usage: estimated per request (batches are shared), and priced at the
model catalogue's input price, summed in fleet_cost_usd_total."""

from __future__ import annotations

import pytest

from contracts.embed import EmbedRequest
from contracts.replies import EmbedResult
from contracts.tokens import estimate_tokens
from providers.catalogue import ModelCatalogue, ModelEntry
from providers.embeddings.openai_compat import OpenAIEmbeddings, OpenAIEmbeddingsConfig
from providers.registry import parse_config
from providers.router import ModelRouter
from tests.unit.providers import API_KEY, FakeClock, FakeSleep, Replay
from workers.handlers.embed import EmbedHandler
from workers.handlers.reply_stream import ChunkStamper
from workers.metrics import WorkerMetrics
from workers.settings import EmbedBatching

MODEL = "text-embedding-3-small"
TEXTS = ["first", "second", "third"]


async def test_an_embed_result_carries_its_estimated_usage_and_its_cost() -> None:
    replay = Replay().json(200, "openai/embeddings.json")
    config = parse_config(
        "openai", {"api_key": API_KEY, "models": [MODEL], "dimension": 4}, OpenAIEmbeddingsConfig
    )
    embedder = OpenAIEmbeddings(
        config, transport=replay.transport(), sleep=FakeSleep(), clock=FakeClock()
    )
    metrics = WorkerMetrics("embed")
    handler = EmbedHandler(
        ModelRouter("embeddings", [embedder]),
        EmbedBatching(max_wait_ms=0),
        metrics,
        models=ModelCatalogue([ModelEntry(name=MODEL, input_usd_per_mtok=0.02)]),
    )
    request = EmbedRequest(request_id="e1", model=MODEL, texts=TEXTS)
    try:
        (result,) = [c async for c in handler.handle(request, ChunkStamper("e1", 0))]
    finally:
        await handler.aclose()
    assert isinstance(result, EmbedResult)
    tokens = sum(estimate_tokens(t) for t in TEXTS)
    assert (result.usage.prompt_tokens, result.usage.estimated) == (tokens, True)
    assert result.usage.cost_usd == pytest.approx(tokens * 0.02 / 1_000_000)
    spent = metrics.registry.get_sample_value(
        "fleet_cost_usd_total", {"kind": "embed", "provider": "openai", "model": MODEL}
    )
    assert spent == pytest.approx(tokens * 0.02 / 1_000_000)
