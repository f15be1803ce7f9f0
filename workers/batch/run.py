"""One batch, run to an end state by the coordinator that owns its command partition.

Everything a run needs to resume is on the broker: the input pages on the input topic,
the finished rows on the output topic (contracts/batch_tally.py says which outcome of
a row counts), the status on the status topic. A run that resumes after its coordinator
died reads the first two again and sends only the requests whose rows are not settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer

from contracts.batch import (
    BatchInfo,
    BatchResults,
    BatchRow,
    BatchState,
    RowResult,
    StopReason,
    decode_page,
    decode_results,
)
from contracts.batch_tally import ResultTally
from contracts.codec import encode
from contracts.errors import ContractError
from contracts.names import batch_input_topic, batch_output_topic
from transport import topology
from transport.connection import KafkaConnection
from transport.topic_reader import TopicMissing, read_to_end
from transport.topology import Topology
from workers.batch.requests import Chunk, ChunkRunner, chunks_of
from workers.batch.status import StatusBoard
from workers.settings import BatchSettings

log = logging.getLogger(__name__)

# An output record stays well under the broker's default message limit (about 1 MiB).
_RECORD_BYTES = 512 * 1024


class RunContext(msgspec.Struct, frozen=True, kw_only=True):
    """What every run of one coordinator shares."""

    connection: KafkaConnection
    namespace: str
    producer: AIOKafkaProducer
    board: StatusBoard
    chunks: ChunkRunner
    settings: BatchSettings
    topology: Topology


class BatchRun:
    def __init__(self, info: BatchInfo, context: RunContext) -> None:
        self.info = info
        self._c = context
        self._stop = asyncio.Event()
        self._why: StopReason | None = None  # cancelled or expired, once the run must stop
        self._tally = ResultTally()
        self._output = batch_output_topic(info.id, context.namespace)

    def cancel(self) -> None:
        """Stop sending requests; the rows finished so far stay in the results."""
        self._why = self._why or StopReason.CANCELLED
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._why is StopReason.CANCELLED

    async def run(self) -> BatchInfo:
        pages = await self._read_input()
        # Checked on a resume too: retention may have taken the input meanwhile.
        problem = _problem(self.info, pages)
        if problem is not None:
            return await self._end(BatchState.FAILED, errors=[problem])
        if self.info.state is BatchState.VALIDATING:
            await self._create_output()
            await self._enter(BatchState.IN_PROGRESS)
        else:
            await self._read_output()
        if self.info.state is BatchState.CANCELLING:
            self._why = StopReason.CANCELLED
        if self._why is None and time.time() < self.info.expires_at:
            await self._run_chunks(list(self._pending(pages)))
        if self._why is None and time.time() >= self.info.expires_at:
            self._why = StopReason.EXPIRED
        if self._why is StopReason.CANCELLED and self.info.state is not BatchState.CANCELLING:
            await self._enter(BatchState.CANCELLING)
        if self._why is not None:
            return await self._end(self._why.state)
        await self._enter(BatchState.FINALIZING)
        return await self._end(BatchState.COMPLETED)

    async def _read_input(self) -> dict[int, list[BatchRow]]:
        pages: dict[int, list[BatchRow]] = {}
        topic = batch_input_topic(self.info.id, self._c.namespace)
        with contextlib.suppress(TopicMissing):  # no pages: the check says what is missing
            async for record in read_to_end(self._c.connection, topic):
                try:
                    page = decode_page(record.value or b"")
                except ContractError as exc:
                    log.warning(
                        "batch %s: skipped input record %d: %s", self.info.id, record.offset, exc
                    )
                    continue
                if page.batch_id == self.info.id:
                    pages.setdefault(page.page, page.rows)  # a page sent twice counts once
        return pages

    async def _create_output(self) -> None:
        await topology.take_batch(self._c.connection, self._c.topology, self.info.id)

    async def _read_output(self) -> None:
        # Made before the run left validation, but kept no longer than the retention: a
        # batch older than that has lost its results (and its input) anyway.
        await self._create_output()
        async for record in read_to_end(self._c.connection, self._output):
            try:
                self._tally.add(record.offset, decode_results(record.value or b""))
            except ContractError as exc:
                log.warning("batch %s: skipped output record: %s", self.info.id, exc)

    def _pending(self, pages: dict[int, list[BatchRow]]) -> Iterator[Chunk]:
        """The requests this round still needs: of each page's chunks, the rows the round
        runs, where any of them is not settled yet."""
        info, tally = self.info, self._tally
        for number in sorted(pages):
            for chunk in chunks_of(number, pages[number], info.endpoint, self._c.settings):
                rows = [r for r in chunk.rows if tally.eligible(r.custom_id, info.round)]
                if any(not tally.settled(r.custom_id, info.round) for r in rows):
                    yield Chunk(page=chunk.page, index=chunk.index, rows=rows)

    async def _run_chunks(self, chunks: list[Chunk]) -> None:
        queue = iter(chunks)
        reporter = asyncio.create_task(self._report_periodically())
        expiry = asyncio.get_running_loop().call_later(
            max(self.info.expires_at - time.time(), 0), self._expire
        )

        async def lane() -> None:
            for chunk in queue:  # one shared iterator: each chunk is taken once
                if self._stop.is_set():
                    return
                await self._write(chunk.page, await self._c.chunks.run(self.info, chunk))

        lanes = [asyncio.create_task(lane()) for _ in range(self._c.settings.max_in_flight)]
        stopper = asyncio.create_task(self._stop.wait())
        everything: asyncio.Future[list[None]] = asyncio.gather(*lanes)
        waits: set[asyncio.Future[Any]] = {stopper, everything}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            expiry.cancel()
            for task in [*lanes, stopper, reporter]:
                task.cancel()
            await asyncio.gather(*lanes, stopper, reporter, everything, return_exceptions=True)
        for task in lanes:  # a lane that failed (the broker took no results) fails the run
            if not task.cancelled() and (exc := task.exception()) is not None:
                raise exc

    def _expire(self) -> None:
        self._why = self._why or StopReason.EXPIRED
        self._stop.set()

    async def _write(self, page: int, rows: list[RowResult]) -> None:
        info = self.info
        for part in _records(rows):
            dimension = next((len(r.embedding) // 4 for r in part if r.embedding), 0)
            results = BatchResults(
                batch_id=info.id, round=info.round, page=page, model=info.model,
                dimension=dimension, rows=part,
            )  # fmt: skip
            sent = await self._c.producer.send_and_wait(self._output, encode(results))
            self._tally.add(sent.offset, results)

    async def _report_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._c.settings.status_interval_s)
            if self._tally.counts(self.info.request_counts.total) != self.info.request_counts:
                await self._publish()

    async def _publish(self) -> None:
        counts = self._tally.counts(self.info.request_counts.total)
        self.info = msgspec.structs.replace(self.info, request_counts=counts)
        await self._c.board.publish(self.info)

    async def _enter(self, state: BatchState, **changes: object) -> None:
        self.info = self.info.entering(state, time.time(), **changes)
        await self._publish()

    async def _end(self, state: BatchState, errors: list[str] | None = None) -> BatchInfo:
        await self._enter(state, errors=errors)
        log.info(
            "batch %s %s: %d completed, %d failed of %d", self.info.id, state,
            self.info.request_counts.completed, self.info.request_counts.failed,
            self.info.request_counts.total,
        )  # fmt: skip
        return self.info


def _problem(info: BatchInfo, pages: dict[int, list[BatchRow]]) -> str | None:
    """Why the input on the broker is not the input the submit described, if it is not."""
    missing = [p for p in range(info.pages) if p not in pages]
    if missing:
        return (
            f"the input topic lacks pages {missing[:5]} of {info.pages} (was it written "
            "completely before the submit? is its retention shorter than the wait?)"
        )
    rows = sum(len(pages[p]) for p in range(info.pages))
    if rows != info.request_counts.total:
        return f"the input holds {rows} rows, the submit said {info.request_counts.total}"
    return None


def _records(rows: list[RowResult]) -> Iterator[list[RowResult]]:
    """The rows in groups that each fit one output record."""
    part: list[RowResult] = []
    size = 0
    for row in rows:
        row_size = 64 + len(row.custom_id) + len(row.embedding or b"")
        row_size += len(row.completion.text) * 4 if row.completion else 0
        row_size += len(encode(row.ranking)) if row.ranking else 0
        row_size += len(row.error.message) if row.error else 0
        if part and size + row_size > _RECORD_BYTES:
            yield part
            part, size = [], 0
        part.append(row)
        size += row_size
    if part:
        yield part
