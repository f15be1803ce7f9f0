"""A vector store on Redis 8 vector sets (VADD / VSIM / VREM), one set per collection.

Each item is an element named by its id, with its metadata as the element's JSON
attributes; equality filters become a VSIM ``FILTER`` expression.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

import msgspec
import numpy as np
from redis import exceptions as redis_errors

from contracts.errors import ErrorCode
from contracts.replies import VectorMatch
from contracts.secrets import Secret
from contracts.vectors import Metadata
from providers.errors import ProviderError
from providers.redis_client import REDIS_FAILURES, RedisClient
from providers.registry import parse_config
from providers.shared import Shared
from providers.vectorstores.base import VectorItem, batch_dimension

# FILTER selectors are bare names (".lang"); anything else would be parsed as an operator.
_FILTER_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUANT: Final = {"q8": "Q8", "noquant": "NOQUANT", "bin": "BIN"}
# Redis away: no connection, or (a cluster) no node reachable, a slot no node serves, a
# cluster down or mid-resharding; caught before ResponseError, which CLUSTERDOWN and TRYAGAIN are.
_UNREACHABLE: Final = (
    redis_errors.ConnectionError,
    redis_errors.RedisClusterException,
    redis_errors.ClusterError,
    redis_errors.TryAgainError,
)


class RedisVectorsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # None: the worker's own Redis (settings.redis_url). A Secret: it may hold a password.
    url: Secret | None = None
    key_prefix: str = "fleet:vectors"
    # Set when a collection is created; "q8" is Redis's default (4x smaller, scores
    # approximate to about 1e-2), "noquant" keeps exact float32 vectors.
    quantization: Literal["q8", "noquant", "bin"] = "q8"
    # Candidates VSIM visits per query (HNSW EF); None: Redis's default.
    ef: Annotated[int, msgspec.Meta(ge=1)] | None = None


def filter_expression(filter: Metadata) -> str:
    """The VSIM FILTER expression for an all-must-match equality filter.

    Redis compares loosely: the string "1", the number 1 and JSON true are equal.
    """
    clauses = []
    for key, value in filter.items():
        if not _FILTER_KEY.fullmatch(key):
            raise ValueError(f"filter key {key!r} is not usable in a Redis FILTER expression")
        clauses.append(f".{key} == {_literal(key, value)}")
    return " and ".join(clauses)


def _literal(key: str, value: str | int | float | bool) -> str:
    if isinstance(value, bool):  # before int: bool is an int; JSON true compares as 1
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"filter value for {key!r} is not a finite number")
        # The expression parser reads no exponents ("1e-7" is a syntax error).
        return format(Decimal(repr(value)), "f")
    # String literals have no escapes: quote with the kind of quote the value lacks.
    if '"' not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    raise ValueError(f"filter value for {key!r} holds both quote kinds; Redis cannot match it")


def _vector_blob(vector: list[float]) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


class RedisVectorStore:
    """Scores: VSIM's similarity is (1 + cosine) / 2 in [0, 1]; it is returned as cosine
    (2 * s - 1) so scores agree with the other stores. Higher is closer either way."""

    name = "redis"

    def __init__(self, config: RedisVectorsConfig, client: RedisClient) -> None:
        self._config = config
        self._redis = client

    def key(self, collection: str) -> str:
        return f"{self._config.key_prefix}:{collection}"

    async def load(self) -> None:
        with self._errors("load"):
            await self._redis.ping()

    async def health(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except REDIS_FAILURES:
            return False

    async def aclose(self) -> None:
        """Nothing of its own to close: the client belongs to the process's pool."""

    async def upsert(self, collection: str, items: list[VectorItem]) -> int:
        if not items:
            return 0
        dimension = batch_dimension(f"{self.name}.upsert", items)
        key = self.key(collection)
        with self._errors("upsert"):
            existing = await self._dimension(key)
            if existing is not None and existing != dimension:
                raise _dimension_error(f"{self.name}.upsert", collection, dimension, existing)
            quant = _QUANT[self._config.quantization]
            async with self._redis.pipeline(transaction=True) as pipe:
                for item in items:
                    attrs = json.dumps(item.metadata, ensure_ascii=False)
                    args: list[Any] = ["VADD", key, "FP32", _vector_blob(item.vector), item.id]
                    pipe.execute_command(*args, quant, "SETATTR", attrs)
                await pipe.execute()
        return len(items)

    async def delete(self, collection: str, ids: list[str]) -> int:
        if not ids:
            return 0
        key = self.key(collection)
        with self._errors("delete"):
            async with self._redis.pipeline(transaction=True) as pipe:
                for id_ in ids:
                    pipe.execute_command("VREM", key, id_)
                removed = await pipe.execute()
        return sum(1 for flag in removed if flag)

    async def drop_collection(self, collection: str) -> bool:
        """Delete the collection's vector set; False when there was none."""
        with self._errors("drop"):
            return bool(await self._redis.delete(self.key(collection)))

    async def query(
        self,
        collection: str,
        vector: list[float],
        *,
        top_k: int,
        filter: Metadata | None = None,
    ) -> list[VectorMatch]:
        op = f"{self.name}.query"
        key = self.key(collection)
        args: list[Any] = ["VSIM", key, "FP32", _vector_blob(vector), "WITHSCORES", "WITHATTRIBS"]
        args += ["COUNT", top_k]
        if self._config.ef is not None:
            args += ["EF", self._config.ef]
        if filter:
            try:
                args += ["FILTER", filter_expression(filter)]
            except ValueError as exc:
                raise ProviderError(ErrorCode.INVALID_INPUT, op, str(exc)) from exc
        with self._errors("query"):
            # One round trip: VSIM answers an empty list for a missing key and an error
            # for a wrong dimension, so EXISTS and VDIM tell those cases apart.
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.exists(key)
                pipe.execute_command("VDIM", key)
                pipe.execute_command(*args)
                exists, dimension, found = await pipe.execute(raise_on_error=False)
        if not exists:
            raise ProviderError(ErrorCode.NOT_FOUND, op, f"no collection {collection!r}")
        if isinstance(dimension, int) and dimension != len(vector):
            raise _dimension_error(op, collection, len(vector), dimension)
        if isinstance(found, Exception):
            raise ProviderError(ErrorCode.INVALID_INPUT, op, str(found)) from found
        # VSIM answers best first; sorting keeps that order whatever mapping the reply becomes.
        return sorted(_matches(found), key=lambda match: -match.score)

    async def _dimension(self, key: str) -> int | None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.exists(key)
            pipe.execute_command("VDIM", key)
            exists, dimension = await pipe.execute(raise_on_error=False)
        if not exists:
            return None
        if isinstance(dimension, Exception):
            raise dimension
        return int(dimension)

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        op = f"{self.name}.{action}"
        try:
            yield
        except redis_errors.TimeoutError as exc:
            raise ProviderError(ErrorCode.TIMEOUT, op, f"Redis timed out: {exc}") from exc
        except _UNREACHABLE as exc:
            raise ProviderError(ErrorCode.PROVIDER_DOWN, op, f"Redis unreachable: {exc}") from exc
        except redis_errors.ResponseError as exc:  # e.g. a key of another type
            raise ProviderError(ErrorCode.INVALID_INPUT, op, str(exc)) from exc


def _matches(found: Any) -> list[VectorMatch]:
    # redis-py parses VSIM WITHSCORES WITHATTRIBS into {element: [score, attributes]}.
    matches = []
    for element, (score, attrs) in dict(found).items():
        metadata = json.loads(attrs) if attrs else {}
        matches.append(
            VectorMatch(
                id=element.decode() if isinstance(element, bytes) else str(element),
                score=2.0 * float(score) - 1.0,
                metadata=metadata,
            )
        )
    return matches


def _dimension_error(op: str, collection: str, got: int, expected: int) -> ProviderError:
    return ProviderError(
        ErrorCode.INVALID_INPUT,
        op,
        f"vector of dimension {got} for collection {collection!r} of dimension {expected}",
    )


def create(config: Mapping[str, Any], shared: Shared) -> RedisVectorStore:
    parsed = parse_config("redis", config, RedisVectorsConfig)
    return RedisVectorStore(parsed, shared.redis_client("redis", parsed.url))
