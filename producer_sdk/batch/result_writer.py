"""Writing a batch's results: OpenAI's batch output lines, compact vectors, or the corpus file.

A writer is given each row's winning outcome once (``write``: the caller applies the tally
rule) and the rows the batch never ran (``write_error``). Formats:

- ``jsonl``: the OpenAI batch output shape (producer_sdk/batch/openai_output_lines.py). Succeeded
  rows go to the output file, failed rows and rows the batch never ran to the error file.
- ``npy`` (vectors): an N x dimension float32 matrix, one row per succeeded row, and
  ``<output>.ids.jsonl`` with their custom_ids in the same order; errors as in ``jsonl``.
- ``parquet`` (vectors, needs pyarrow): columns custom_id (string) and embedding
  (fixed_size_list<float32>[dimension]); errors as in ``jsonl``.
- ``corpus``: one file of ``{"custom_id", "embedding"}`` or ``{"custom_id", "error": {"code",
  "message"}}`` lines, what ``fleet embed-corpus`` has always written.

Vectors in JSON are float32 values written as the doubles they are (exact, and fast: about
8 kB a line for 384 numbers); the compact formats are for size.
"""

from __future__ import annotations

import abc
import array
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Literal, Protocol, Self

import msgspec

from contracts.batch import BatchInfo, RowError, RowResult
from contracts.embed_parts import float32_values
from contracts.errors import ContractError
from producer_sdk.batch.openai_output_lines import (
    LineError,
    OutputLine,
    failed_line,
    never_ran_line,
    succeeded_line,
)

OutputFormat = Literal["jsonl", "npy", "parquet", "corpus"]
OUTPUT_FORMATS: Final[tuple[OutputFormat, ...]] = ("jsonl", "npy", "parquet", "corpus")
VECTOR_FORMATS: Final[frozenset[OutputFormat]] = frozenset({"npy", "parquet", "corpus"})

_NPY_HEADER_BYTES: Final = 128  # room for any shape; patched with the row count at close
_PARQUET_ROW_GROUP: Final = 8192
_BUFFER_BYTES: Final = 1 << 20

_encode: Final = msgspec.json.Encoder().encode


class WrittenFiles(msgspec.Struct, frozen=True, kw_only=True):
    paths: list[str]
    succeeded: int
    failed: int


def open_result_writer(
    format: OutputFormat,
    output: Path | str,
    errors: Path | str,
    *,
    batch: BatchInfo,
    dimension: int | None = None,
) -> ResultWriter:
    """A writer of ``batch``'s results in ``format``, its files created (or emptied): use it
    as a context manager, or ``close()`` it. ``dimension`` is the vectors' length (default:
    the batch's ``dimensions``, else the first vector's). ``corpus`` writes errors into
    ``output`` too, and leaves ``errors`` alone."""
    if format not in OUTPUT_FORMATS:
        raise ContractError(f"unknown results format {format!r}: {', '.join(OUTPUT_FORMATS)}")
    if format in VECTOR_FORMATS and batch.endpoint != "/v1/embeddings":
        raise ContractError(
            f"the {format} format holds vectors: it is for embedding batches, not "
            f"{batch.endpoint} (use jsonl)"
        )
    output, errors = Path(output), Path(errors)
    if format != "corpus" and output.resolve() == errors.resolve():
        raise ContractError(f"{output}: the output and the error file must be two files")
    for path in (output,) if format == "corpus" else (output, errors):
        path.parent.mkdir(parents=True, exist_ok=True)
    return _WRITERS[format](output, errors, batch=batch, dimension=dimension or batch.dimensions)


class ResultWriter(abc.ABC):
    """Writes each row as it is given; ``close()`` (or leaving ``with``) finishes the files
    and says what was written. A subclass writes succeeded rows; failed ones go to its
    error lines (``_errors``)."""

    def __init__(
        self, output: Path, errors: _ErrorLines, *, batch: BatchInfo, dimension: int | None
    ) -> None:
        self._output = output
        self._errors = errors
        self._batch = batch
        self._dimension = dimension
        self._closed: WrittenFiles | None = None
        self.succeeded = 0
        self.failed = 0

    def write(self, row: RowResult, model: str) -> None:
        """A row's winning outcome; ``model`` is the model that answered it."""
        if row.error is None:
            self._succeeded(row, model)
            self.succeeded += 1
            return
        self.failed += 1
        if row.error.stopped is not None:  # no response to show, only the error, as OpenAI
            self._errors.never_ran(row.custom_id, row.error)
        else:
            self._errors.failed(row)

    def write_error(self, custom_id: str, error: RowError) -> None:
        """A row the batch never ran (it was cancelled, expired or failed before it)."""
        self.failed += 1
        self._errors.never_ran(custom_id, error)

    def close(self) -> WrittenFiles:
        if self._closed is None:
            self._closed = self.written
            try:
                self._finish()
            finally:
                self._errors.close()
        return self._closed

    @property
    def written(self) -> WrittenFiles:
        """The files and the counts (so far, before ``close``)."""
        if self._closed is not None:
            return self._closed
        paths = [*self._paths(), *self._errors.paths()]
        return WrittenFiles(
            paths=[str(p) for p in dict.fromkeys(paths)],
            succeeded=self.succeeded,
            failed=self.failed,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @abc.abstractmethod
    def _paths(self) -> list[Path]:
        """The files of succeeded rows."""

    @abc.abstractmethod
    def _succeeded(self, row: RowResult, model: str) -> None: ...

    @abc.abstractmethod
    def _finish(self) -> None: ...

    def _vector(self, row: RowResult) -> bytes:
        """The row's vector, checked to be as long as the others."""
        if row.embedding is None:
            raise ContractError(f"row {row.custom_id!r} has no vector")
        count, odd = divmod(len(row.embedding), 4)
        if odd or count == 0:
            raise ContractError(
                f"row {row.custom_id!r}: {len(row.embedding)} bytes are not a float32 vector"
            )
        if self._dimension is None:
            self._dimension = count
        elif count != self._dimension:
            raise ContractError(
                f"row {row.custom_id!r} has {count} numbers, the batch's vectors {self._dimension}"
            )
        return row.embedding


class _JsonlWriter(ResultWriter):
    def __init__(
        self, output: Path, errors: Path, *, batch: BatchInfo, dimension: int | None
    ) -> None:
        super().__init__(output, _OpenAIErrors(errors, batch), batch=batch, dimension=dimension)
        self._out = _open(output)

    def _paths(self) -> list[Path]:
        return [self._output]

    def _succeeded(self, row: RowResult, model: str) -> None:
        self._out.write(_encode(succeeded_line(self._batch, row, model)) + b"\n")

    def _finish(self) -> None:
        self._out.close()


class _NpyWriter(ResultWriter):
    """The matrix goes out row by row after a header of fixed size that ``close`` rewrites
    with the count: none of it is held in memory, and numpy is not needed."""

    def __init__(
        self, output: Path, errors: Path, *, batch: BatchInfo, dimension: int | None
    ) -> None:
        super().__init__(output, _OpenAIErrors(errors, batch), batch=batch, dimension=dimension)
        self._ids_path = output.with_name(output.name + ".ids.jsonl")
        self._out = _open(output)
        self._out.write(_npy_header(0, dimension or 0))
        self._ids = _open(self._ids_path)

    def _paths(self) -> list[Path]:
        return [self._output, self._ids_path]

    def _succeeded(self, row: RowResult, model: str) -> None:
        self._out.write(self._vector(row))  # little-endian float32, as the header says
        self._ids.write(_encode(row.custom_id) + b"\n")

    def _finish(self) -> None:
        try:
            self._out.seek(0)
            self._out.write(_npy_header(self.succeeded, self._dimension or 0))
        finally:
            self._out.close()
            self._ids.close()


class _ParquetWriter(ResultWriter):
    """Rows go out in row groups of ``_PARQUET_ROW_GROUP``; the file is made at the first
    (or at close, without rows, when none succeeded)."""

    def __init__(
        self, output: Path, errors: Path, *, batch: BatchInfo, dimension: int | None
    ) -> None:
        self._pa, self._pq = _pyarrow()  # before any file is made
        super().__init__(output, _OpenAIErrors(errors, batch), batch=batch, dimension=dimension)
        self._writer: Any = None
        self._ids: list[str] = []
        self._vectors = bytearray()

    def _paths(self) -> list[Path]:
        return [self._output]

    def _succeeded(self, row: RowResult, model: str) -> None:
        self._vectors += self._vector(row)
        self._ids.append(row.custom_id)
        if len(self._ids) >= _PARQUET_ROW_GROUP:
            self._flush()

    def _finish(self) -> None:
        if self._ids or self._writer is None:
            self._flush()
        self._writer.close()

    def _flush(self) -> None:
        pa = self._pa
        dimension = self._dimension or 0  # 0: no row succeeded and no size was given
        schema = pa.schema(
            [("custom_id", pa.string()), ("embedding", pa.list_(pa.float32(), dimension))]
        )
        if self._writer is None:
            self._writer = self._pq.ParquetWriter(str(self._output), schema)
        if not self._ids:
            self._writer.write_table(schema.empty_table())
            return
        block = array.array("f")
        block.frombytes(self._vectors)
        if sys.byteorder == "big":  # the rows are little-endian, arrow's buffers native
            block.byteswap()
        values = pa.Array.from_buffers(pa.float32(), len(block), [None, pa.py_buffer(block)])
        vectors = pa.FixedSizeListArray.from_arrays(values, dimension)
        ids = pa.array(self._ids, pa.string())
        self._writer.write_table(pa.Table.from_arrays([ids, vectors], schema=schema))
        self._ids.clear()
        self._vectors.clear()


class _CorpusWriter(ResultWriter):
    """One file, a line per row, as ``fleet embed-corpus`` wrote before batches were the
    fleet's: ``{"custom_id", "embedding"}`` or ``{"custom_id", "error": {"code", "message"}}``."""

    def __init__(
        self, output: Path, errors: Path, *, batch: BatchInfo, dimension: int | None
    ) -> None:
        self._out = _open(output)
        super().__init__(output, _CorpusErrors(output, self._out), batch=batch, dimension=dimension)

    def _paths(self) -> list[Path]:
        return [self._output]

    def _succeeded(self, row: RowResult, model: str) -> None:
        line = _CorpusVector(custom_id=row.custom_id, embedding=float32_values(self._vector(row)))
        self._out.write(_encode(line) + b"\n")

    def _finish(self) -> None:
        pass  # the error lines share the file, and close it


_WRITERS: Final[Mapping[OutputFormat, Callable[..., ResultWriter]]] = {
    "jsonl": _JsonlWriter,
    "npy": _NpyWriter,
    "parquet": _ParquetWriter,
    "corpus": _CorpusWriter,
}


class _ErrorLines(Protocol):
    def failed(self, row: RowResult) -> None: ...
    def never_ran(self, custom_id: str, error: RowError) -> None: ...
    def paths(self) -> list[Path]: ...
    def close(self) -> None: ...


class _OpenAIErrors:
    """The error file in OpenAI's shape (producer_sdk/batch/openai_output_lines.py)."""

    def __init__(self, path: Path, batch: BatchInfo) -> None:
        self._path = path
        self._batch = batch
        self._file = _open(path)

    def failed(self, row: RowResult) -> None:
        self._line(failed_line(self._batch, row))

    def never_ran(self, custom_id: str, error: RowError) -> None:
        self._line(never_ran_line(self._batch, custom_id, error))

    def paths(self) -> list[Path]:
        return [self._path]

    def close(self) -> None:
        self._file.close()

    def _line(self, line: OutputLine) -> None:
        self._file.write(_encode(line) + b"\n")


class _CorpusErrors:
    def __init__(self, path: Path, file: IO[bytes]) -> None:
        self._path = path
        self._file = file

    def failed(self, row: RowResult) -> None:
        assert row.error is not None
        self.never_ran(row.custom_id, row.error)

    def never_ran(self, custom_id: str, error: RowError) -> None:
        line = _CorpusError(custom_id=custom_id, error=LineError(error.code, error.message))
        self._file.write(_encode(line) + b"\n")

    def paths(self) -> list[Path]:
        return [self._path]

    def close(self) -> None:
        self._file.close()


class _CorpusVector(msgspec.Struct, frozen=True):
    custom_id: str
    embedding: list[float]


class _CorpusError(msgspec.Struct, frozen=True):
    custom_id: str
    error: LineError


def _open(path: Path) -> IO[bytes]:
    return path.open("wb", buffering=_BUFFER_BYTES)


def _npy_header(rows: int, dimension: int) -> bytes:
    """A .npy (format 1.0) header of ``_NPY_HEADER_BYTES`` for a little-endian float32
    matrix."""
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dimension}), }}"
    header = text.encode("latin1").ljust(_NPY_HEADER_BYTES - 10 - 1) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ContractError(
            "writing Parquet needs pyarrow: install the `parquet` extra "
            "(pip install 'ai-job-fleet[parquet]')"
        ) from exc
    return pa, pq
