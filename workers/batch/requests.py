"""A batch's rows as fleet requests on the batch lane, and their answers as row results.

Request ids are stable (batch, round, page, chunk): a coordinator that resumes after a
crash sends the requests it had in flight again under the same ids, and the workers'
ledger answers them from the first run instead of running the model twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from contracts.batch import BatchInfo, BatchRow, Completion, RowError, RowResult
from contracts.embed_parts import float32_values
from contracts.errors import ErrorCode, FleetError
from contracts.tokens import estimate_tokens
from contracts.usage import Usage
from contracts.vectors import VectorRecord
from producer_sdk import DeadlineExceeded, FleetClient, FleetRequestError, TenantClients
from providers.call_retry import CallRetryPolicy
from workers.settings import BatchSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

# A request the broker would not take (it is away) is sent again this often before its
# rows are given a retryable error: 1 s, doubling to 30 s, five times.
_PUBLISH_RETRY = CallRetryPolicy(base_delay_s=1.0, max_delay_s=30.0, jitter="none")
_PUBLISH_TRIES = 5


class Chunk(msgspec.Struct, frozen=True, kw_only=True):
    """Rows of one input page that travel as one request."""

    page: int
    index: int  # within the page
    rows: list[BatchRow]


def chunks_of(page: int, rows: list[BatchRow], endpoint: str, s: BatchSettings) -> list[Chunk]:
    """A page cut into right-sized requests: one per chat or rerank row; embed rows together,
    up to the settings' rows and characters per request. The cut depends only on the page,
    so it is the same when a coordinator resumes."""
    if endpoint != "/v1/embeddings":
        return [Chunk(page=page, index=i, rows=[row]) for i, row in enumerate(rows)]
    result: list[Chunk] = []
    current: list[BatchRow] = []
    chars = 0
    for row in rows:
        size = len(row.text or "")
        if current and (len(current) >= s.embed_chunk_rows or chars + size > s.embed_chunk_chars):
            result.append(Chunk(page=page, index=len(result), rows=current))
            current, chars = [], 0
        current.append(row)
        chars += size
    if current:
        result.append(Chunk(page=page, index=len(result), rows=current))
    return result


def request_id_of(info: BatchInfo, chunk: Chunk) -> str:
    return f"{info.id}-r{info.round}-p{chunk.page}-c{chunk.index}"


class ChunkRunner:
    """Runs one chunk through the fleet as its batch's tenant: its row results, errors
    included (never raises but for cancellation, or a client the broker would not open)."""

    def __init__(self, clients: TenantClients, settings: BatchSettings) -> None:
        self._clients = clients
        self._settings = settings

    async def run(self, info: BatchInfo, chunk: Chunk) -> list[RowResult]:
        request_id = request_id_of(info, chunk)
        ids = [row.custom_id for row in chunk.rows]
        fleet = await self._clients.of(info.owner)
        try:
            if info.endpoint == "/v1/chat/completions":
                return [
                    await self._published(lambda: self._complete(fleet, info, chunk, request_id))
                ]
            if info.endpoint == "/v1/rerank":
                return [await self._published(lambda: self._rerank(fleet, info, chunk, request_id))]
            return await self._published(lambda: self._embed(fleet, info, chunk, request_id))
        except FleetRequestError as exc:
            error = RowError(
                code=exc.code.value, message=exc.reply.message, retryable=exc.retryable
            )
        except DeadlineExceeded as exc:
            error = RowError(code=ErrorCode.TIMEOUT.value, message=str(exc), retryable=True)
        except FleetError as exc:
            error = RowError(code=ErrorCode.PROVIDER_DOWN.value, message=str(exc), retryable=True)
        return [RowResult(custom_id=i, error=error, request_id=request_id) for i in ids]

    async def _published(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, again after a backoff while the broker does not take the request."""
        for attempt in range(_PUBLISH_TRIES):
            try:
                return await call()
            except (FleetRequestError, DeadlineExceeded):
                raise
            except FleetError as exc:
                if attempt + 1 == _PUBLISH_TRIES:
                    raise
                delay = _PUBLISH_RETRY.backoff_s(attempt)
                log.warning("a batch request could not be sent (%s); again in %.0f s", exc, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _embed(
        self, fleet: FleetClient, info: BatchInfo, chunk: Chunk, request_id: str
    ) -> list[RowResult]:
        texts = [row.text or "" for row in chunk.rows]
        result = await fleet.embed(
            texts,
            model=info.model,
            dimensions=info.dimensions,
            request_id=request_id,
            timeout_s=self._settings.request_timeout_s,
            lane="batch",
        )
        vectors = result.vectors_float32 or b""
        width = 4 * result.dimension
        if info.collection is not None:
            await fleet.upsert(
                info.collection,
                [
                    VectorRecord(
                        id=row.custom_id,
                        vector=float32_values(vectors[i * width : (i + 1) * width]),
                    )
                    for i, row in enumerate(chunk.rows)
                ],
                request_id=f"{request_id}-upsert",
                timeout_s=self._settings.request_timeout_s,
                lane="batch",
            )
        exact = len(texts) == 1 and not result.usage.estimated
        return [
            RowResult(
                custom_id=row.custom_id,
                embedding=vectors[i * width : (i + 1) * width],
                usage=result.usage if exact else _estimated(texts[i]),
                request_id=request_id,
            )
            for i, row in enumerate(chunk.rows)
        ]

    async def _complete(
        self, fleet: FleetClient, info: BatchInfo, chunk: Chunk, request_id: str
    ) -> RowResult:
        (row,) = chunk.rows
        assert row.chat is not None, "a chat row has its body (checked when it was read)"
        body = row.chat
        result = await fleet.generate(
            list(body.messages),
            model=info.model,
            request_id=request_id,
            timeout_s=self._settings.request_timeout_s,
            lane="batch",
            max_tokens=body.max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            stop=body.stop,
            tools=body.tools,
            tool_choice=body.tool_choice,
            seed=body.seed,
            presence_penalty=body.presence_penalty,
            frequency_penalty=body.frequency_penalty,
            user=body.user,
            response_format=body.response_format,
        )
        return RowResult(
            custom_id=row.custom_id,
            completion=Completion(
                text=result.text,
                finish_reason=result.finish_reason,
                tool_calls=msgspec.to_builtins(result.tool_calls) if result.tool_calls else None,
                model=result.model if result.model != info.model else None,
            ),
            usage=result.usage,
            request_id=request_id,
        )

    async def _rerank(
        self, fleet: FleetClient, info: BatchInfo, chunk: Chunk, request_id: str
    ) -> RowResult:
        (row,) = chunk.rows
        assert row.rerank is not None, "a rerank row has its body (checked when it was read)"
        body = row.rerank
        result = await fleet.rerank(
            body.query,
            body.documents,
            model=info.model,
            top_n=body.top_n,
            return_documents=body.return_documents,
            rank_fields=body.rank_fields,
            max_tokens_per_doc=body.max_tokens_per_doc,
            request_id=request_id,
            timeout_s=self._settings.request_timeout_s,
            lane="batch",
        )
        return RowResult(
            custom_id=row.custom_id,
            ranking=result.results,
            usage=result.usage,
            request_id=request_id,
        )


def _estimated(text: str) -> Usage:
    tokens = estimate_tokens(text)
    return Usage(prompt_tokens=tokens, total_tokens=tokens, estimated=True)
