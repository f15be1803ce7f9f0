"""Redis 8 vector sets against the real Redis started by deploy/local/redis.sh."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

import pytest

from contracts.errors import ErrorCode
from providers.errors import ProviderError
from providers.redis_client import RedisPool
from providers.shared import Shared
from providers.vectorstores import vector_stores
from providers.vectorstores.redis_vectors import RedisVectorStore, create, filter_expression
from tests.conformance.vectorstores import (
    QUERY,
    DroppableStore,
    VectorStoreConformance,
)

pytestmark = [pytest.mark.redis, pytest.mark.redis_cluster]


class TestRedisVectorStore(VectorStoreConformance):
    # The default Q8 quantisation keeps int8 vectors: scores are close, not exact.
    score_tolerance: ClassVar[float] = 0.02

    @pytest.fixture
    async def store(self, shared: Shared) -> AsyncIterator[DroppableStore]:
        store = create({"key_prefix": "test:vectors"}, shared)
        await store.load()
        yield store
        await store.aclose()


class TestRedisVectorStoreNoQuant(TestRedisVectorStore):
    score_tolerance: ClassVar[float] = 1e-5

    @pytest.fixture
    async def store(self, shared: Shared) -> AsyncIterator[DroppableStore]:
        store = create({"key_prefix": "test:vectors", "quantization": "noquant"}, shared)
        await store.load()
        yield store
        await store.aclose()


@pytest.mark.parametrize(
    ("filter", "expression"),
    [
        ({"lang": "en"}, '.lang == "en"'),
        ({"t": 'say "hi"'}, ".t == 'say \"hi\"'"),
        ({"ok": True, "n": 3}, ".ok == 1 and .n == 3"),
        ({"ok": False}, ".ok == 0"),
        ({"w": 1e-7}, ".w == 0.0000001"),
        ({"w": -2.5}, ".w == -2.5"),
    ],
)
def test_filter_expression(filter: dict[str, str | int | float | bool], expression: str) -> None:
    assert filter_expression(filter) == expression


@pytest.mark.parametrize(
    "filter",
    [{"a.b": 1}, {"e-f": 1}, {"": 1}, {"q": 'it\'s "both"'}, {"x": float("nan")}],
)
def test_filters_redis_cannot_express_are_refused(
    filter: dict[str, str | int | float | bool],
) -> None:
    with pytest.raises(ValueError, match="filter"):
        filter_expression(filter)


async def test_unexpressible_filter_is_invalid_input(shared: Shared) -> None:
    store = create({}, shared)
    try:
        with pytest.raises(ProviderError) as caught:
            await store.query("c", QUERY, top_k=1, filter={"a.b": 1})
        assert caught.value.code is ErrorCode.INVALID_INPUT
    finally:
        await store.aclose()


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
async def test_unreachable_redis_is_provider_down_without_the_password(scheme: str) -> None:
    password = "redis-pass-never-shown-91c"
    pool = RedisPool("redis://127.0.0.1:1/0")
    store = vector_stores.create(
        "redis", {"url": f"{scheme}://:{password}@127.0.0.1:1/0"}, Shared(redis=pool)
    )
    assert isinstance(store, RedisVectorStore)
    assert password not in repr(store._config)
    try:
        with pytest.raises(ProviderError) as caught:
            await store.query("c", QUERY, top_k=1)
        assert caught.value.code is ErrorCode.PROVIDER_DOWN
        assert password not in str(caught.value)
        assert not await store.health()
    finally:
        await store.aclose()
        await pool.aclose()
