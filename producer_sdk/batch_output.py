"""Writing a batch's results: OpenAI's batch output lines, compact vectors, or the corpus file.

A writer is given each row's winning outcome once (``write``: the caller applies the tally
rule) and the rows the batch never ran (``write_error``). Formats:

- ``jsonl``: the OpenAI batch output shape. Succeeded rows go to the output file (``{"id",
  "custom_id", "response": {"status_code": 200, "request_id", "body"}, "error": null}``,
  the body an ``/v1/embeddings`` or ``chat.completion`` response), failed rows to the error
  file (the HTTP status their error code stands for, OpenAI's error body), rows the batch
  never ran to the error file with ``"response": null`` and ``"error": {"code", "message"}``.
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
import hashlib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Literal, Protocol, Self

import msgspec

from contracts.batch import BatchInfo, Completion, RowError, RowResult
from contracts.errors import ContractError
from contracts.usage import Usage

OutputFormat = Literal["jsonl", "npy", "parquet", "corpus"]
OUTPUT_FORMATS: Final[tuple[OutputFormat, ...]] = ("jsonl", "npy", "parquet", "corpus")
VECTOR_FORMATS: Final[frozenset[OutputFormat]] = frozenset({"npy", "parquet", "corpus"})

# The HTTP status each error code stands for, as OpenAI's API would answer it.
HTTP_STATUS: Final[Mapping[str, int]] = {
    "invalid_input": 400, "context_length_exceeded": 400, "auth": 401,
    "budget_exhausted": 402, "not_found": 404, "output_invalid": 422, "rate_limit": 429,
    "internal": 500, "unexpected_response": 500, "provider_down": 503, "timeout": 504,
}  # fmt: skip
# OpenAI's error `type` for each status (its API answers 401 and 404 as request errors too).
_ERROR_TYPE: Final[Mapping[int, str]] = {
    400: "invalid_request_error", 401: "invalid_request_error", 402: "insufficient_quota",
    404: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
}  # fmt: skip
# Codes of rows the batch never ran (batch_expired, batch_cancelled, batch_failed): no
# response to show, only the error, as OpenAI writes them.
_NEVER_RAN_PREFIX: Final = "batch_"
_NPY_HEADER_BYTES: Final = 128  # room for any shape; patched with the row count at close
_PARQUET_ROW_GROUP: Final = 8192
_BUFFER_BYTES: Final = 1 << 20

_encode: Final = msgspec.json.Encoder().encode


class WrittenFiles(msgspec.Struct, frozen=True, kw_only=True):
    paths: list[str]
    succeeded: int
    failed: int


def floats(block: bytes) -> list[float]:
    """Little-endian float32 values as Python floats."""
    values = array.array("f")
    values.frombytes(block)
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


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
        if row.error.code.startswith(_NEVER_RAN_PREFIX):
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
        body = (
            self._chat(row, row.completion, model) if row.completion else self._vectors(row, model)
        )
        response = _Response(status_code=200, request_id=row.request_id, body=body)
        line = _OutputLine(_line_id(self._batch, row.custom_id), row.custom_id, response, None)
        self._out.write(_encode(line) + b"\n")

    def _vectors(self, row: RowResult, model: str) -> _EmbeddingsBody:
        if row.embedding is None:
            raise ContractError(f"row {row.custom_id!r} has neither a vector nor a completion")
        prompt = row.usage.prompt_tokens if row.usage else 0
        return _EmbeddingsBody(
            data=[_Embedding(embedding=floats(row.embedding))],
            model=model,
            usage=_EmbeddingsUsage(prompt_tokens=prompt, total_tokens=prompt),
        )

    def _chat(self, row: RowResult, completion: Completion, model: str) -> _ChatCompletion:
        calls = [_tool_call(row.custom_id, c) for c in completion.tool_calls or ()]
        # As OpenAI answers: a turn of tool calls alone has no content.
        content = completion.text if completion.text or not calls else None
        message = _Message(content=content, tool_calls=calls or msgspec.UNSET)
        created = self._batch.in_progress_at or self._batch.created_at
        return _ChatCompletion(
            id="chatcmpl-" + _digest(self._batch, row.custom_id),
            created=int(created),
            model=model,
            choices=[_Choice(message=message, finish_reason=completion.finish_reason)],
            usage=_chat_usage(row.usage),
        )

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
        line = _CorpusVector(custom_id=row.custom_id, embedding=floats(self._vector(row)))
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
    """The error file in OpenAI's shape: a failed row with the HTTP status of its code and
    OpenAI's error body, a row never run with ``"response": null`` and the error."""

    def __init__(self, path: Path, batch: BatchInfo) -> None:
        self._path = path
        self._batch = batch
        self._file = _open(path)

    def failed(self, row: RowResult) -> None:
        assert row.error is not None
        status = HTTP_STATUS.get(row.error.code, 500)
        error = _ErrorBody(
            message=row.error.message,
            type=_ERROR_TYPE.get(status, "server_error"),
            code=row.error.code,
        )
        response = _Response(status_code=status, request_id=row.request_id, body={"error": error})
        self._line(_OutputLine(_line_id(self._batch, row.custom_id), row.custom_id, response, None))

    def never_ran(self, custom_id: str, error: RowError) -> None:
        line_error = _LineError(code=error.code, message=error.message)
        self._line(_OutputLine(_line_id(self._batch, custom_id), custom_id, None, line_error))

    def paths(self) -> list[Path]:
        return [self._path]

    def close(self) -> None:
        self._file.close()

    def _line(self, line: _OutputLine) -> None:
        self._file.write(_encode(line) + b"\n")


class _CorpusErrors:
    def __init__(self, path: Path, file: IO[bytes]) -> None:
        self._path = path
        self._file = file

    def failed(self, row: RowResult) -> None:
        assert row.error is not None
        self.never_ran(row.custom_id, row.error)

    def never_ran(self, custom_id: str, error: RowError) -> None:
        line = _CorpusError(custom_id=custom_id, error=_LineError(error.code, error.message))
        self._file.write(_encode(line) + b"\n")

    def paths(self) -> list[Path]:
        return [self._path]

    def close(self) -> None:
        self._file.close()


# The OpenAI batch output shape, its fields in the order OpenAI writes them.


class _LineError(msgspec.Struct, frozen=True):
    code: str
    message: str


class _Response(msgspec.Struct, frozen=True):
    status_code: int
    request_id: str | None
    body: Any


class _OutputLine(msgspec.Struct, frozen=True):
    id: str
    custom_id: str
    response: _Response | None
    error: _LineError | None


class _ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    message: str
    type: str
    param: None = None
    code: str


class _Embedding(msgspec.Struct, frozen=True, kw_only=True):
    object: str = "embedding"
    index: int = 0
    embedding: list[float]


class _EmbeddingsUsage(msgspec.Struct, frozen=True):
    prompt_tokens: int
    total_tokens: int


class _EmbeddingsBody(msgspec.Struct, frozen=True, kw_only=True):
    object: str = "list"
    data: list[_Embedding]
    model: str
    usage: _EmbeddingsUsage


class _Function(msgspec.Struct, frozen=True):
    name: str
    arguments: str


class _ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: str = "function"
    function: _Function


class _Message(msgspec.Struct, frozen=True, kw_only=True):
    role: str = "assistant"
    content: str | None
    refusal: None = None
    tool_calls: list[_ToolCall] | msgspec.UnsetType = msgspec.UNSET  # absent without calls


class _Choice(msgspec.Struct, frozen=True, kw_only=True):
    index: int = 0
    message: _Message
    logprobs: None = None
    finish_reason: str


class _ChatUsage(msgspec.Struct, frozen=True, kw_only=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: dict[str, int] | msgspec.UnsetType = msgspec.UNSET
    completion_tokens_details: dict[str, int] | msgspec.UnsetType = msgspec.UNSET


class _ChatCompletion(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[_Choice]
    usage: _ChatUsage


class _CorpusVector(msgspec.Struct, frozen=True):
    custom_id: str
    embedding: list[float]


class _CorpusError(msgspec.Struct, frozen=True):
    custom_id: str
    error: _LineError


def _open(path: Path) -> IO[bytes]:
    return path.open("wb", buffering=_BUFFER_BYTES)


def _digest(batch: BatchInfo, custom_id: str) -> str:
    return hashlib.sha256(f"{batch.id}\0{custom_id}".encode()).hexdigest()[:24]


def _line_id(batch: BatchInfo, custom_id: str) -> str:
    """Stable: a batch's row has the same id in every download."""
    return "batch_req_" + _digest(batch, custom_id)


def _tool_call(custom_id: str, call: object) -> _ToolCall:
    """A ToolCall as the coordinator keeps it (``id``, ``name``, ``arguments``), in OpenAI's
    shape."""
    if not isinstance(call, dict):
        raise ContractError(f"row {custom_id!r}: a tool call is not an object: {call!r}")
    try:
        function = _Function(name=str(call["name"]), arguments=str(call.get("arguments", "")))
        return _ToolCall(id=str(call["id"]), function=function)
    except KeyError as exc:
        raise ContractError(f"row {custom_id!r}: a tool call has no {exc.args[0]!r}") from exc


def _chat_usage(usage: Usage | None) -> _ChatUsage:
    if usage is None:
        return _ChatUsage()
    cached, reasoning = usage.cached_tokens, usage.reasoning_tokens
    return _ChatUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        prompt_tokens_details=msgspec.UNSET if cached is None else {"cached_tokens": cached},
        completion_tokens_details=(
            msgspec.UNSET if reasoning is None else {"reasoning_tokens": reasoning}
        ),
    )


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
