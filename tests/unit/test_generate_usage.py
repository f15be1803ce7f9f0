"""Usage in the generate result: counted by the worker (and marked estimated) when the
provider reports none, priced at the model catalogue's prices for the provider and model
that answered, and summed in fleet_cost_usd_total."""

from __future__ import annotations

from typing import Any

import pytest

from contracts import ChatMessage, GenerateRequest, GenerateResult, ReplyChunk
from contracts.tokens import estimate_prompt_tokens, estimate_tokens
from providers.catalogue import ModelCatalogue, ModelEntry
from providers.chat.fallback import FallbackChat
from providers.chat.openai_compat import OpenAIChat, OpenAIChatConfig
from providers.registry import parse_config
from providers.router import ModelRouter
from tests.unit.providers import API_KEY, FakeClock, FakeSleep, Replay
from workers.handlers.generate import GenerateHandler
from workers.handlers.reply_stream import ChunkStamper
from workers.metrics import WorkerMetrics

MODEL = "qwen2.5-0.5b-instruct"
ASK = [ChatMessage(role="user", content="Say hello.")]


def openai(replay: Replay, name: str = "llama-server", **extra: Any) -> OpenAIChat:
    raw: dict[str, Any] = {"name": name, "api_key": API_KEY, "models": [MODEL], **extra}
    config = parse_config(name, raw, OpenAIChatConfig)
    return OpenAIChat(config, transport=replay.transport(), sleep=FakeSleep(), clock=FakeClock())


async def result_of(handler: GenerateHandler, **fields: Any) -> GenerateResult:
    job = GenerateRequest(request_id="r1", model=MODEL, messages=ASK, **fields)
    try:
        chunks: list[ReplyChunk] = [c async for c in handler.handle(job, ChunkStamper("r1", 0))]
    finally:
        await handler.aclose()
    final = chunks[-1]
    assert isinstance(final, GenerateResult)
    return final


def spent(metrics: WorkerMetrics, provider: str) -> float | None:
    labels = {"kind": "generate", "provider": provider, "model": MODEL}
    return metrics.registry.get_sample_value("fleet_cost_usd_total", labels)


async def test_a_server_that_reports_no_usage_gets_an_estimate_marked_as_one() -> None:
    replay = Replay().sse("llamacpp/chat_stream_no_usage_handwritten.sse")
    final = await result_of(GenerateHandler(ModelRouter("chat", [openai(replay)])))
    assert final.text == "Hello! How can I help?"
    usage = final.usage
    assert usage.estimated
    assert usage.prompt_tokens == estimate_prompt_tokens(ASK, None)
    assert usage.completion_tokens == estimate_tokens(final.text)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.cost_usd is None  # no catalogue price


async def test_reported_usage_is_kept_and_priced() -> None:
    replay = Replay().sse("openai/chat_stream.sse")
    catalogue = ModelCatalogue(
        [ModelEntry(name=MODEL, input_usd_per_mtok=0.15, output_usd_per_mtok=0.60)]
    )
    metrics = WorkerMetrics("generate")
    handler = GenerateHandler(
        ModelRouter("chat", [openai(replay)]), models=catalogue, metrics=metrics
    )
    final = await result_of(handler)
    usage = final.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.estimated) == (19, 9, False)
    expected = (19 * 0.15 + 9 * 0.60) / 1_000_000
    assert usage.cost_usd == pytest.approx(expected)
    assert spent(metrics, "llama-server") == pytest.approx(expected)


async def test_a_chain_is_priced_by_the_link_that_answered() -> None:
    down = Replay().json(503, "openai/error_500.json")
    up = Replay().sse("openai/chat_stream.sse")
    chain = FallbackChat(
        [
            openai(down, "cheap", retry={"max_attempts": 1}),
            openai(up, "dear", retry={"max_attempts": 1}),
        ]
    )
    catalogue = ModelCatalogue(
        [
            ModelEntry(name=MODEL, input_usd_per_mtok=1.0, output_usd_per_mtok=1.0),
            ModelEntry(name=MODEL, provider="dear", output_usd_per_mtok=10.0),
        ]
    )
    metrics = WorkerMetrics("generate")
    handler = GenerateHandler(ModelRouter("chat", [chain]), models=catalogue, metrics=metrics)
    final = await result_of(handler)
    expected = (19 * 1.0 + 9 * 10.0) / 1_000_000  # dear's output price over the model's
    assert final.usage.cost_usd == pytest.approx(expected)
    assert spent(metrics, "dear") == pytest.approx(expected)
    assert spent(metrics, "fallback") is None
