"""pgvector against the real PostgreSQL 18 + pgvector started by deploy/local/postgres.sh."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from contracts.errors import ErrorCode
from providers.errors import ProviderError
from providers.shared import NOTHING_SHARED
from providers.vectorstores import VectorItem, vector_stores
from providers.vectorstores.pgvector import PgVectorStore, create
from tests.conformance.vectorstores import (
    QUERY,
    DroppableStore,
    VectorStoreConformance,
)

pytestmark = [pytest.mark.postgres]

PASSWORD = "pg-pass-never-shown-7f3a"


class TestPgVectorStore(VectorStoreConformance):
    @pytest.fixture
    async def store(self, postgres_dsn: str) -> AsyncIterator[DroppableStore]:
        # Trust auth on loopback accepts any password: this one exists to be hidden.
        dsn = postgres_dsn.replace("postgres@", f"postgres:{PASSWORD}@")
        store = create({"dsn": dsn}, NOTHING_SHARED)
        await store.load()
        yield store
        await store.aclose()

    async def test_long_collection_names_get_distinct_tables(self, store: DroppableStore) -> None:
        assert isinstance(store, PgVectorStore)
        base = "c" * 80
        first, second = f"{base}-one", f"{base}-two"
        assert store.table_name(first) != store.table_name(second)
        assert len(store.table_name(first).encode()) <= 63
        try:
            await store.upsert(first, [VectorItem(id="a", vector=QUERY)])
            await store.upsert(second, [VectorItem(id="b", vector=QUERY)])
            assert [m.id for m in await store.query(first, QUERY, top_k=5)] == ["a"]
        finally:
            await store.drop_collection(first)
            await store.drop_collection(second)

    async def test_table_has_hnsw_cosine_index(
        self, store: DroppableStore, collection: str, postgres_dsn: str
    ) -> None:
        assert isinstance(store, PgVectorStore)
        await store.upsert(collection, [VectorItem(id="a", vector=QUERY)])
        async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
            cursor = await conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = %s",
                [store.table_name(collection)],
            )
            definitions = [row[0] for row in await cursor.fetchall()]
        assert any("hnsw" in d and "vector_cosine_ops" in d for d in definitions), definitions

    async def test_hostile_collection_name_is_quoted(self, store: DroppableStore) -> None:
        name = 'x"; DROP TABLE pg_class; --'
        try:
            assert await store.upsert(name, [VectorItem(id="a", vector=QUERY)]) == 1
            assert [m.id for m in await store.query(name, QUERY, top_k=1)] == ["a"]
        finally:
            await store.drop_collection(name)


def test_registered_and_secret_hidden_in_repr() -> None:
    store = vector_stores.create("pgvector", {"dsn": f"postgresql://u:{PASSWORD}@127.0.0.1:1/db"})
    assert isinstance(store, PgVectorStore)
    assert PASSWORD not in repr(store._config)


async def test_unreachable_server_is_provider_down_without_the_password() -> None:
    store = create(
        {"dsn": f"postgresql://fleet:{PASSWORD}@127.0.0.1:1/fleet", "connect_timeout_s": 2},
        NOTHING_SHARED,
    )
    try:
        with pytest.raises(ProviderError) as caught:
            await store.query("c", QUERY, top_k=1)
        error = caught.value
        assert error.code is ErrorCode.PROVIDER_DOWN
        assert error.retryable
        assert "127.0.0.1:1" in str(error)
        for text in (str(error), repr(error), str(error.__cause__), str(error.__context__)):
            assert PASSWORD not in text
        assert not await store.health()
    finally:
        await store.aclose()


def test_malformed_dsn_error_hides_the_password() -> None:
    from contracts.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        create({"dsn": f"host=127.0.0.1 password={PASSWORD} bogus_option=1"}, NOTHING_SHARED)
    assert PASSWORD not in str(caught.value)
