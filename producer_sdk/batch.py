"""Corpus embedding jobs: JSONL in, results joined by custom_id out, resumable.

Input lines are ``{"custom_id": "...", "text": "..."}``. Results are appended to the output
file as chunks finish, one line per input: ``{"custom_id": ..., "embedding": [...]}`` or
``{"custom_id": ..., "error": {"code": ..., "message": ...}}`` (in completion order, like the
OpenAI Batch API: join by custom_id). A job stopped for any reason (cancel, crash) resumes
from the output file: rows already there are not sent again, and chunk request ids are
stable, so a chunk the fleet already finished is replayed from its ledger, not recomputed.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, Literal

import msgspec

from contracts.errors import ContractError
from contracts.replies import EmbedResult
from producer_sdk.errors import FleetRequestError

Status = Literal["in_progress", "completed", "cancelled", "failed"]


class CorpusRow(msgspec.Struct, frozen=True):
    custom_id: str
    text: str


class RowError(msgspec.Struct, frozen=True):
    code: str
    message: str


class ResultRow(msgspec.Struct, frozen=True, omit_defaults=True):
    custom_id: str
    embedding: list[float] | None = None
    error: RowError | None = None


class CorpusProgress(msgspec.Struct, frozen=True, kw_only=True):
    batch_id: str
    status: Status
    total: int
    succeeded: int
    failed: int
    elapsed_s: float

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    @property
    def rows_per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0


EmbedChunk = Callable[[list[str], str], Awaitable[EmbedResult]]
_row_decoder = msgspec.json.Decoder(CorpusRow)
_result_decoder = msgspec.json.Decoder(ResultRow)
_encoder = msgspec.json.Encoder()


def read_corpus(path: Path) -> list[CorpusRow]:
    """All rows of a JSONL corpus; a bad line is an error naming the line number."""
    rows: list[CorpusRow] = []
    seen: set[str] = set()
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = _row_decoder.decode(line)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise ContractError(f"{path}:{number}: {exc}") from exc
            if row.custom_id in seen:
                raise ContractError(f"{path}:{number}: duplicate custom_id {row.custom_id!r}")
            seen.add(row.custom_id)
            rows.append(row)
    return rows


def finished_rows(output: Path) -> tuple[set[str], int]:
    """custom_ids already in the output and how many of them are errors; a torn last line
    (a crash mid-write) is cut off."""
    if not output.exists():
        return set(), 0
    done: set[str] = set()
    errors = 0
    keep = 0
    with output.open("rb") as lines:
        for line in lines:
            try:
                row = _result_decoder.decode(line)
            except (msgspec.ValidationError, msgspec.DecodeError):
                break
            done.add(row.custom_id)
            errors += row.error is not None
            keep += len(line)
    with output.open("rb+") as handle:
        handle.truncate(keep)
    return done, errors


def batch_id_for(input_path: Path, model: str) -> str:
    """Stable per corpus content and model, so a rerun resumes instead of starting over."""
    digest = hashlib.sha256(model.encode())
    with input_path.open("rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return f"corpus-{digest.hexdigest()[:20]}"


class CorpusJob:
    def __init__(
        self,
        embed: EmbedChunk,
        input_path: Path,
        output_path: Path,
        *,
        model: str,
        chunk_size: int = 64,
        max_in_flight: int = 16,
        progress: Callable[[CorpusProgress], None] | None = None,
    ) -> None:
        if chunk_size < 1 or max_in_flight < 1:
            raise ValueError("chunk_size and max_in_flight must be at least 1")
        self._embed = embed
        self._input = input_path
        self._output = output_path
        self._model = model
        self._chunk_size = chunk_size
        self._max_in_flight = max_in_flight
        self._progress = progress
        self.batch_id = batch_id_for(input_path, model)
        self._succeeded = 0
        self._failed = 0
        self._total = 0
        self._started = time.monotonic()

    async def run(self) -> CorpusProgress:
        rows = read_corpus(self._input)
        self._total = len(rows)
        already, self._failed = finished_rows(self._output)
        self._succeeded = len(already) - self._failed
        chunks = list(self._chunks(rows, already))
        self._report("in_progress")
        with self._output.open("ab") as out:
            try:
                await self._run_chunks(chunks, out)
            except asyncio.CancelledError:
                self._report("cancelled")
                raise
        return self._report("completed")

    def _chunks(
        self, rows: list[CorpusRow], already: set[str]
    ) -> Iterator[tuple[int, list[CorpusRow]]]:
        # Chunk boundaries come from the full corpus, so their request ids stay stable.
        for index, start in enumerate(range(0, len(rows), self._chunk_size)):
            chunk = [
                r for r in rows[start : start + self._chunk_size] if r.custom_id not in already
            ]
            if chunk:
                yield index, chunk

    async def _run_chunks(self, chunks: list[tuple[int, list[CorpusRow]]], out: IO[bytes]) -> None:
        queue: asyncio.Queue[tuple[int, list[CorpusRow]]] = asyncio.Queue()
        for chunk in chunks:
            queue.put_nowait(chunk)

        async def lane() -> None:
            while not queue.empty():
                index, rows = queue.get_nowait()
                results = await self._embed_chunk(index, rows)
                out.write(b"".join(_encoder.encode(r) + b"\n" for r in results))
                out.flush()
                self._report("in_progress")

        lanes = [asyncio.create_task(lane()) for _ in range(min(self._max_in_flight, len(chunks)))]
        try:
            await asyncio.gather(*lanes)
        finally:
            for task in lanes:
                task.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)

    async def _embed_chunk(self, index: int, rows: list[CorpusRow]) -> list[ResultRow]:
        try:
            result = await self._embed([r.text for r in rows], f"{self.batch_id}-{index}")
        except FleetRequestError as exc:
            # The chunk failed as a whole (e.g. invalid input): every row says why.
            self._failed += len(rows)
            error = RowError(code=exc.code.value, message=exc.reply.message)
            return [ResultRow(custom_id=r.custom_id, error=error) for r in rows]
        self._succeeded += len(rows)
        return [
            ResultRow(custom_id=r.custom_id, embedding=v)
            for r, v in zip(rows, result.vectors, strict=True)
        ]

    def _report(self, status: Status) -> CorpusProgress:
        progress = CorpusProgress(
            batch_id=self.batch_id,
            status=status,
            total=self._total,
            succeeded=self._succeeded,
            failed=self._failed,
            elapsed_s=time.monotonic() - self._started,
        )
        if self._progress is not None:
            self._progress(progress)
        return progress
