"""A vector store on PostgreSQL + pgvector through psycopg 3 (async), one table per collection.

Each table holds ``id text primary key, embedding vector(dim), metadata jsonb`` with an
HNSW index on cosine distance. Uses psycopg_pool when it is installed, else one connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.util
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any, Final

import msgspec
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from contracts.errors import ConfigError, ErrorCode
from contracts.replies import VectorMatch
from contracts.secrets import Secret
from contracts.vectors import Metadata
from providers.errors import ProviderError
from providers.registry import parse_config
from providers.shared import Shared
from providers.vectorstores.base import VectorItem, batch_dimension

_MAX_IDENTIFIER: Final = 63  # PostgreSQL's NAMEDATALEN - 1; longer names are cut silently


class PgVectorConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    dsn: Secret = Secret("postgresql://postgres@127.0.0.1:15432/fleet")
    create_extension: bool = True  # CREATE EXTENSION IF NOT EXISTS vector on connect
    table_prefix: str = "fleet_vec_"
    schema: str = "public"
    pool_min_size: Annotated[int, msgspec.Meta(ge=0)] = 1
    pool_max_size: Annotated[int, msgspec.Meta(ge=1)] = 4  # used only with psycopg_pool
    connect_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    hnsw_m: Annotated[int, msgspec.Meta(ge=2, le=100)] = 16
    hnsw_ef_construction: Annotated[int, msgspec.Meta(ge=4, le=1000)] = 64
    hnsw_ef_search: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 40


def _vector_literal(vector: list[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


class _Connections:
    """Lends connections: from a psycopg_pool pool when installed, else one shared
    connection that one task at a time may use (a psycopg connection is not concurrent)."""

    def __init__(self, config: PgVectorConfig) -> None:
        self._config = config
        self._pool: Any = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()
        self._use_pool = importlib.util.find_spec("psycopg_pool") is not None

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if self._config.create_extension:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(
            self._config.dsn.reveal(),
            autocommit=True,
            connect_timeout=max(1, round(self._config.connect_timeout_s)),
        )
        try:
            await self._configure(conn)
        except BaseException:
            await conn.close()
            raise
        return conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self._use_pool:
            async with self._lock:
                if self._pool is None:
                    self._pool = await self._open_pool()
            async with self._pool.connection() as conn:
                yield conn
            return
        async with self._lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = await self._connect()
            yield self._conn

    async def _open_pool(self) -> Any:
        # Imported by name: the pool is optional, and the single-connection path needs none.
        pool_module: Any = importlib.import_module("psycopg_pool")
        pool = pool_module.AsyncConnectionPool(
            self._config.dsn.reveal(),
            min_size=self._config.pool_min_size,
            max_size=self._config.pool_max_size,
            kwargs={"autocommit": True},
            configure=self._configure,
            timeout=self._config.connect_timeout_s,
            open=False,
        )
        await pool.open(wait=True, timeout=self._config.connect_timeout_s)
        return pool

    async def close(self) -> None:
        async with self._lock:
            if self._pool is not None:
                await self._pool.close()
                self._pool = None
            if self._conn is not None:
                await self._conn.close()
                self._conn = None


class PgVectorStore:
    name = "pgvector"

    def __init__(self, config: PgVectorConfig) -> None:
        self._config = config
        try:
            params = conninfo_to_dict(config.dsn.reveal())
        except psycopg.ProgrammingError:
            # psycopg's message quotes the DSN, password included: never pass it on.
            raise ConfigError("invalid config for provider 'pgvector': dsn is malformed") from None
        self._secrets = [str(params[k]) for k in ("password",) if params.get(k)]
        self._where = "{}:{}/{}".format(
            params.get("host", "localhost"), params.get("port", 5432), params.get("dbname", "")
        )
        self._connections = _Connections(config)

    def table_name(self, collection: str) -> str:
        """The table for ``collection``: readable when it fits PostgreSQL's 63-byte limit,
        else shortened with a hash so that two long names never share a table."""
        name = f"{self._config.table_prefix}{collection}"
        if len(name.encode()) <= _MAX_IDENTIFIER:
            return name
        return f"{_head(name, _MAX_IDENTIFIER - 17)}_{_short_hash(collection)}"

    async def load(self) -> None:
        async with self._session("load") as conn:
            await conn.execute("SELECT 1")

    async def health(self) -> bool:
        try:
            await self.load()
        except ProviderError:
            return False
        return True

    async def aclose(self) -> None:
        await self._connections.close()

    async def upsert(self, collection: str, items: list[VectorItem]) -> int:
        op = f"{self.name}.upsert"
        if not items:
            return 0
        dimension = batch_dimension(op, items)
        table = self.table_name(collection)
        statement = sql.SQL(
            "INSERT INTO {} (id, embedding, metadata) VALUES (%s, %s::vector, %s::jsonb) "
            "ON CONFLICT (id) DO UPDATE "
            "SET embedding = EXCLUDED.embedding, metadata = EXCLUDED.metadata"
        ).format(self._qualified(table))
        rows = [
            (item.id, _vector_literal(item.vector), json.dumps(item.metadata)) for item in items
        ]
        async with self._session("upsert") as conn, conn.transaction():
            existing = await self._dimension(conn, table)
            if existing is None:
                await self._create_table(conn, table, dimension)
            elif existing != dimension:
                raise _dimension_error(op, collection, dimension, existing)
            async with conn.cursor() as cursor:
                await cursor.executemany(statement, rows)
        return len(items)

    async def delete(self, collection: str, ids: list[str]) -> int:
        if not ids:
            return 0
        table = self.table_name(collection)
        async with self._session("delete") as conn:
            if await self._dimension(conn, table) is None:
                return 0
            cursor = await conn.execute(
                sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(self._qualified(table)),
                [list(ids)],
            )
            return cursor.rowcount

    async def drop_collection(self, collection: str) -> bool:
        """Drop the collection's table; False when there was none."""
        table = self.table_name(collection)
        async with self._session("drop") as conn:
            if await self._dimension(conn, table) is None:
                return False
            await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._qualified(table)))
        return True

    async def query(
        self,
        collection: str,
        vector: list[float],
        *,
        top_k: int,
        filter: Metadata | None = None,
    ) -> list[VectorMatch]:
        op = f"{self.name}.query"
        table = self.table_name(collection)
        statement = sql.SQL(
            "SELECT id, metadata, embedding <=> %(q)s::vector AS distance FROM {} "
            "WHERE metadata @> %(filter)s::jsonb "
            "ORDER BY embedding <=> %(q)s::vector LIMIT %(k)s"
        ).format(self._qualified(table))
        params = {"q": _vector_literal(vector), "filter": json.dumps(filter or {}), "k": top_k}
        async with self._session("query") as conn, conn.transaction():
            dimension = await self._dimension(conn, table)
            if dimension is None:
                raise ProviderError(ErrorCode.NOT_FOUND, op, f"no collection {collection!r}")
            if dimension != len(vector):
                raise _dimension_error(op, collection, len(vector), dimension)
            await conn.execute(
                sql.SQL("SET LOCAL hnsw.ef_search = {}").format(
                    sql.Literal(self._config.hnsw_ef_search)
                )
            )
            if filter:
                # Without it, HNSW filters after the index scan and can return fewer than
                # top_k rows when the filter is selective (pgvector >= 0.8).
                await conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
            cursor = await conn.execute(statement, params)
            rows = await cursor.fetchall()
        return [VectorMatch(id=row[0], score=1.0 - float(row[2]), metadata=row[1]) for row in rows]

    def _qualified(self, table: str) -> sql.Identifier:
        return sql.Identifier(self._config.schema, table)

    async def _dimension(self, conn: psycopg.AsyncConnection[Any], table: str) -> int | None:
        """The dimension of ``table``'s vector column, or None when there is no such table."""
        cursor = await conn.execute(
            "SELECT a.atttypmod FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) "
            "AND a.attname = 'embedding' AND NOT a.attisdropped",
            [self._config.schema, table],
        )
        row = await cursor.fetchone()
        return None if row is None else int(row[0])

    async def _create_table(
        self, conn: psycopg.AsyncConnection[Any], table: str, dimension: int
    ) -> None:
        # Two workers creating the same table at once would collide on pg_type; a
        # transaction-scoped advisory lock on the name makes the second one wait.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))", [f"{self._config.schema}.{table}"]
        )
        qualified = self._qualified(table)
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, "
                "embedding vector({}) NOT NULL, metadata jsonb NOT NULL DEFAULT '{{}}')"
            ).format(qualified, sql.Literal(dimension))
        )
        existing = await self._dimension(conn, table)
        if existing != dimension:
            raise _dimension_error(f"{self.name}.upsert", table, dimension, existing or 0)
        await conn.execute(
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw (embedding vector_cosine_ops) "
                "WITH (m = {}, ef_construction = {})"
            ).format(
                sql.Identifier(_index_name(table)),
                qualified,
                sql.Literal(self._config.hnsw_m),
                sql.Literal(self._config.hnsw_ef_construction),
            )
        )

    @asynccontextmanager
    async def _session(self, action: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        op = f"{self.name}.{action}"
        try:
            async with self._connections.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:  # refused, reset, server shutting down
            raise ProviderError(
                ErrorCode.PROVIDER_DOWN,
                op,
                f"PostgreSQL at {self._where} unavailable: {self._scrub(str(exc))}",
            ) from None
        except psycopg.errors.UndefinedFile as exc:  # pgvector missing on the server
            raise ProviderError(ErrorCode.PROVIDER_DOWN, op, self._scrub(str(exc))) from None
        except psycopg.DataError as exc:  # e.g. a vector with NaN
            raise ProviderError(ErrorCode.INVALID_INPUT, op, self._scrub(str(exc))) from None
        except psycopg.Error as exc:
            raise ProviderError(ErrorCode.INTERNAL, op, self._scrub(str(exc))) from None

    def _scrub(self, message: str) -> str:
        # Errors are re-raised "from None" and scrubbed: psycopg messages can quote the
        # connection string, and a chained cause would carry it into tracebacks and logs.
        for secret in self._secrets:
            message = message.replace(secret, "**********")
        return message


def _index_name(table: str) -> str:
    name = f"{table}_hnsw"
    if len(name.encode()) <= _MAX_IDENTIFIER:
        return name
    return f"{_head(table, _MAX_IDENTIFIER - 22)}_{_short_hash(table)}_hnsw"


def _head(text: str, max_bytes: int) -> str:
    return text.encode()[:max_bytes].decode(errors="ignore")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _dimension_error(op: str, collection: str, got: int, expected: int) -> ProviderError:
    return ProviderError(
        ErrorCode.INVALID_INPUT,
        op,
        f"vector of dimension {got} for collection {collection!r} of dimension {expected}",
    )


def create(config: Mapping[str, Any], shared: Shared) -> PgVectorStore:
    return PgVectorStore(parse_config("pgvector", config, PgVectorConfig))
