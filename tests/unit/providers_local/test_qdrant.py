"""Qdrant through qdrant-client's local mode (no Qdrant server binary is reachable here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contracts.errors import ConfigError, ErrorCode
from providers.errors import ProviderError
from providers.shared import NOTHING_SHARED
from providers.vectorstores import VectorItem, vector_stores
from providers.vectorstores.qdrant import QdrantVectorStore, create, point_id
from tests.conformance.vectorstores import (
    QUERY,
    DroppableStore,
    VectorStoreConformance,
)


class TestQdrantMemory(VectorStoreConformance):
    @pytest.fixture
    async def store(self) -> AsyncIterator[DroppableStore]:
        store = create({"location": ":memory:"}, NOTHING_SHARED)
        await store.load()
        yield store
        await store.aclose()


class TestQdrantOnDisk(VectorStoreConformance):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[DroppableStore]:
        store = create({"path": str(tmp_path / "qdrant")}, NOTHING_SHARED)
        await store.load()
        yield store
        await store.aclose()


async def test_data_on_disk_survives_a_restart(tmp_path: Path) -> None:
    config = {"path": str(tmp_path / "qdrant")}
    first = create(config, NOTHING_SHARED)
    await first.upsert("c", [VectorItem(id="doc-1", vector=QUERY, metadata={"k": "v"})])
    await first.aclose()
    second = create(config, NOTHING_SHARED)
    try:
        [match] = await second.query("c", QUERY, top_k=1)
        assert (match.id, match.metadata) == ("doc-1", {"k": "v"})
    finally:
        await second.aclose()


def test_point_ids_are_deterministic_uuids() -> None:
    assert point_id("doc-1") == point_id("doc-1")
    assert point_id("doc-1") != point_id("doc-2")
    assert len(point_id("any string at all: ü")) == 36


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"location": ":memory:", "path": "/tmp/x"},
        {"url": "http://h:6333", "location": ":memory:"},
    ],
)
def test_exactly_one_of_url_path_location(config: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        vector_stores.create("qdrant", config)


async def test_unreachable_server_is_provider_down_without_the_key() -> None:
    key = "qdrant-key-never-shown-5d2"
    store = create(
        {
            "url": "https://127.0.0.1:1",
            "api_key": key,
            "timeout_s": 2,
            "check_compatibility": False,
        },
        NOTHING_SHARED,
    )
    assert isinstance(store, QdrantVectorStore)
    assert key not in repr(store._config)
    try:
        with pytest.raises(ProviderError) as caught:
            await store.query("c", QUERY, top_k=1)
        assert caught.value.code is ErrorCode.PROVIDER_DOWN
        assert key not in str(caught.value)
        assert not await store.health()
    finally:
        await store.aclose()


async def test_filter_keys_with_paths_are_invalid() -> None:
    store = create({"location": ":memory:"}, NOTHING_SHARED)
    try:
        await store.upsert("c", [VectorItem(id="a", vector=QUERY)])
        with pytest.raises(ProviderError) as caught:
            await store.query("c", QUERY, top_k=1, filter={"a.b": 1})
        assert caught.value.code is ErrorCode.INVALID_INPUT
    finally:
        await store.aclose()
