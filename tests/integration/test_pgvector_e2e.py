"""Vectors jobs through a worker over Kafka into pgvector (PostgreSQL 18 + pgvector started by
deploy/local/postgres.sh): what the store tests check on the store alone, here as a caller
sees it, with each tenant's rows in a table of its own."""

from __future__ import annotations

import uuid

import msgspec
import psycopg
import pytest
from psycopg import sql

from contracts import ErrorCode, VectorRecord
from producer_sdk import FleetClient, FleetRequestError
from tests.conftest import Infra
from tests.integration.harness import serving
from workers import WorkerSettings, build_worker
from workers.handlers.vectors import tenant_collection
from workers.settings import ProviderSpec

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.postgres]

EAST, NORTH, NORTH_EAST = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.7, 0.7, 0.0]


async def test_vectors_worker_over_pgvector_upserts_queries_filters_and_deletes(
    settings: WorkerSettings, infra: Infra, postgres_dsn: str
) -> None:
    prefix = f"e2e_{uuid.uuid4().hex[:8]}_"
    store = ProviderSpec(name="pgvector", config={"dsn": postgres_dsn, "table_prefix": prefix})
    # Records carry their vectors: no embedding model to load, the store is the subject.
    settings = msgspec.structs.replace(settings, vector_store=store, embeddings=[])
    collection = "docs"
    records = [
        VectorRecord(id="east", vector=EAST, metadata={"lang": "en"}),
        VectorRecord(id="north", vector=NORTH, metadata={"lang": "fr"}),
        VectorRecord(id="north-east", vector=NORTH_EAST, metadata={"lang": "en", "n": 2}),
    ]

    def client(tenant: str) -> FleetClient:
        return infra.client(namespace=settings.namespace, tenant=tenant, default_timeout_s=60)

    worker = await build_worker("vectors", settings)
    async with serving(worker), client("acme") as acme, client("globex") as globex:
        upserted = await acme.upsert(collection, records)
        nearest = await acme.query(collection, vector=EAST, top_k=2)
        english = await acme.query(collection, vector=NORTH, top_k=3, filter={"lang": "en"})
        # Another tenant, the same collection name: nothing of acme's to read or delete.
        with pytest.raises(FleetRequestError) as other:
            await globex.query(collection, vector=EAST)
        refused = await globex.delete(collection, ["east"])
        deleted = await acme.delete(collection, ["east", "missing"])
        after = await acme.query(collection, vector=EAST, top_k=3)
    table = f"{prefix}{tenant_collection('acme', collection)}"
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
        cursor = await conn.execute(
            sql.SQL("SELECT id FROM {} ORDER BY id").format(sql.Identifier(table))
        )
        rows = [row[0] for row in await cursor.fetchall()]
        await conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
    assert upserted.upserted == 3
    assert [m.id for m in nearest.matches or []] == ["east", "north-east"]
    assert [m.id for m in english.matches or []] == ["north-east", "east"]
    assert (english.matches or [])[0].metadata == {"lang": "en", "n": 2}
    assert other.value.code is ErrorCode.NOT_FOUND
    assert not refused.deleted
    assert deleted.deleted == 1
    assert [m.id for m in after.matches or []] == ["north-east", "north"]
    assert rows == ["north", "north-east"], "the rows live in PostgreSQL, in acme's table"
