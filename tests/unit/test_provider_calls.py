"""Handlers reach providers only through ProviderCalls (span, checks, usage, price and
cost), and only the ChunkStamper numbers a chunk."""

from __future__ import annotations

import ast
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from opentelemetry import trace

from contracts import ChatMessage, ErrorCode, GenerateRequest, ToolSpec
from contracts.embed import EmbedRequest
from contracts.replies import VectorMatch, VectorResult
from contracts.usage import Usage
from contracts.vectors import VectorQueryRequest, VectorRecord, VectorUpsertRequest
from providers.catalogue import ModelCatalogue, ModelEntry
from providers.chat import ChatCapabilities
from providers.chat.fallback import FallbackChat
from providers.embeddings.base import EmbeddingCapabilities, Embeddings
from providers.errors import ProviderError
from providers.router import ModelRouter
from providers.telemetry import ProviderSpan
from providers.vectorstores.base import VectorItem
from tests.conftest import REPO
from tests.integration.scripted_chat import ScriptedChat
from workers.handlers import provider_calls
from workers.handlers.embed import EmbedHandler
from workers.handlers.generate import GenerateHandler
from workers.handlers.reply_stream import ChunkStamper
from workers.handlers.vectors import VectorsHandler
from workers.metrics import WorkerMetrics
from workers.settings import EmbedBatching

Span = tuple[str, str, str, str | None]
HANDLERS = sorted((REPO / "workers" / "handlers").glob("*.py"))


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> list[Span]:
    """The spans ProviderCalls opens: (category, provider, operation, model)."""
    opened: list[Span] = []

    @asynccontextmanager
    async def recorded(
        category: str, provider: str, operation: str, model: str | None
    ) -> AsyncIterator[ProviderSpan]:
        opened.append((category, provider, operation, model))
        yield ProviderSpan(trace.INVALID_SPAN)

    monkeypatch.setattr(provider_calls, "span_opener", lambda: recorded)
    return opened


class Embedder:
    name = "embedder"

    @property
    def capabilities(self) -> EmbeddingCapabilities:
        return EmbeddingCapabilities(models=("e-model",), dimension=2)

    async def embed(self, texts: list[str], *, model: str) -> Embeddings:
        vectors = [[1.0, 0.0] for _ in texts]
        return Embeddings(model=model, vectors=vectors, usage=Usage(prompt_tokens=7))

    async def load(self) -> None:
        return None

    async def health(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


class Store:
    name = "store"

    def __init__(self) -> None:
        self.items: list[VectorItem] = []

    async def upsert(self, collection: str, items: list[VectorItem]) -> int:
        self.items += items
        return len(items)

    async def delete(self, collection: str, ids: list[str]) -> int:
        return 0

    async def query(
        self,
        collection: str,
        vector: list[float],
        *,
        top_k: int,
        filter: dict[str, str | int | float | bool] | None = None,
    ) -> list[VectorMatch]:
        return [VectorMatch(id=item.id, score=1.0) for item in self.items[:top_k]]

    async def load(self) -> None:
        return None

    async def health(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


async def test_vectors_calls_have_spans_and_their_embeddings_a_cost(spans: list[Span]) -> None:
    metrics = WorkerMetrics("vectors")
    catalogue = ModelCatalogue([ModelEntry(name="e-model", input_usd_per_mtok=1.0)])
    handler = VectorsHandler(
        Store(), ModelRouter("embeddings", [Embedder()]), "e-model", models=catalogue,
        metrics=metrics,
    )  # fmt: skip
    upsert = VectorUpsertRequest(
        request_id="v1", collection="c", records=[VectorRecord(id="a", text="hello")]
    )
    query = VectorQueryRequest(request_id="v2", collection="c", vector=[1.0, 0.0], top_k=1)
    for request in (upsert, query):
        chunks = [c async for c in handler.handle(request, ChunkStamper(request.request_id, 0))]
        assert isinstance(chunks[-1], VectorResult)
    assert spans == [
        ("embeddings", "embedder", "embeddings", "e-model"),
        ("vectorstores", "store", "upsert", None),
        ("vectorstores", "store", "query", None),
    ]
    spent = metrics.registry.get_sample_value(
        "fleet_cost_usd_total", {"kind": "vectors", "provider": "embedder", "model": "e-model"}
    )
    assert spent == pytest.approx(7 / 1_000_000)


async def test_an_embed_batch_has_its_span(spans: list[Span]) -> None:
    handler = EmbedHandler(ModelRouter("embeddings", [Embedder()]), EmbedBatching(max_wait_ms=0))
    request = EmbedRequest(request_id="e1", model="e-model", texts=["a", "b"])
    try:
        [_ async for _ in handler.handle(request, ChunkStamper("e1", 0))]
    finally:
        await handler.aclose()
    assert spans == [("embeddings", "embedder", "embeddings", "e-model")]


async def test_a_chat_call_has_a_span_and_a_refused_one_none(spans: list[Span]) -> None:
    chat = ScriptedChat()
    handler = GenerateHandler(ModelRouter("chat", [chat]))
    ask = [ChatMessage(role="user", content="hi")]
    plain = GenerateRequest(request_id="g1", model="scripted-model", messages=ask)
    [_ async for _ in handler.handle(plain, ChunkStamper("g1", 0))]
    assert spans == [("chat", "scripted", "chat", "scripted-model")]
    refused = GenerateRequest(
        request_id="g2", model="scripted-model", messages=ask, tools=[ToolSpec(name="t")]
    )
    with pytest.raises(ProviderError) as info:
        [_ async for _ in handler.handle(refused, ChunkStamper("g2", 0))]
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert len(spans) == 1
    assert chat.calls == 1


class SmallChat(ScriptedChat):
    """Serves another model than the one asked for: a fallback chain's substitute."""

    name = "small"

    @property
    def capabilities(self) -> ChatCapabilities:
        return ChatCapabilities(models=("small-model",))


async def test_the_chat_span_names_the_model_that_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handles: list[ProviderSpan] = []

    @asynccontextmanager
    async def recorded(
        category: str, provider: str, operation: str, model: str | None
    ) -> AsyncIterator[ProviderSpan]:
        handles.append(ProviderSpan(trace.INVALID_SPAN))
        yield handles[-1]

    monkeypatch.setattr(provider_calls, "span_opener", lambda: recorded)
    down = ScriptedChat(failures=[ErrorCode.PROVIDER_DOWN])
    chain = FallbackChat([down, SmallChat()], substitutes=[None, "small-model"])
    handler = GenerateHandler(ModelRouter("chat", [chain]))
    ask = [ChatMessage(role="user", content="hi")]
    request = GenerateRequest(request_id="g3", model="scripted-model", messages=ask)
    [_ async for _ in handler.handle(request, ChunkStamper("g3", 0))]
    assert down.calls == 1
    assert [h.response_model for h in handles] == ["small-model"]


def _names(path: Path) -> tuple[set[str], set[str]]:
    """The keyword arguments a module passes and the attributes it calls."""
    tree = ast.parse(path.read_text(), str(path))
    keywords = {
        k.arg for n in ast.walk(tree) if isinstance(n, ast.Call) for k in n.keywords if k.arg
    }
    called = {
        n.func.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    }
    return keywords, called


@pytest.mark.parametrize(
    "path",
    [p for p in HANDLERS if p.name != "reply_stream.py"],
    ids=lambda p: p.name,
)
def test_no_handler_numbers_a_chunk(path: Path) -> None:
    keywords, called = _names(path)
    assert "seq" not in keywords
    assert "next_seq" not in called


def _imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    return {
        f"{n.module}.{alias.name}"
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module
        for alias in n.names
    }


# What only the wrapper may use: spans, usage completion, pricing; and the chat guards,
# which no handler runs (the provider side owns them: providers/chat/guarded.py).
WRAPPER_ONLY = {
    "providers.telemetry.provider_span",
    "providers.chat.usage_count.completed_usage",
    "providers.chat.guarded.guarded",
}
GUARDS = {
    "providers.chat.support.require_support",
    "providers.chat.context.require_room",
}


@pytest.mark.parametrize(
    "path", [p for p in HANDLERS if p.name != "provider_calls.py"], ids=lambda p: p.name
)
def test_only_the_wrapper_opens_spans_and_prices(path: Path) -> None:
    assert _imported(path) & (WRAPPER_ONLY | GUARDS) == set()
    _, called = _names(path)
    assert {"priced", "spent", "record_usage"} & called == set()
