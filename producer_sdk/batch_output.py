"""Writing a batch's results: OpenAI's batch output lines, or compact vectors.

Writers are given each row's winning outcome once (the caller applies the tally rule) and
the rows that never ran (``write_error``). Formats:

- ``jsonl``: the OpenAI batch output shape. Succeeded rows to the output file
  (``{"id", "custom_id", "response": {"status_code": 200, "request_id", "body"}, "error":
  null}``, the body an ``/v1/embeddings`` or ``chat.completion`` response); failed rows to
  the error file, with the HTTP status the error stands for and OpenAI's error body; rows
  the batch never ran with ``"response": null`` and ``error {code, message}``.
- ``npy`` (vectors): a float32 matrix, one row per succeeded row, and ``<output>.ids.jsonl``
  with their custom_ids in the same order; errors as in ``jsonl``.
- ``parquet`` (vectors, needs pyarrow): columns custom_id, embedding; errors as in ``jsonl``.
- ``corpus``: one file of ``{"custom_id", "embedding"}`` or ``{"custom_id", "error"}``
  lines, what ``fleet embed-corpus`` always wrote.
"""

from __future__ import annotations

import array
import hashlib
import sys
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self

import msgspec

from contracts.batch import BatchInfo, RowError, RowResult
from contracts.errors import ContractError

OutputFormat = Literal["jsonl", "npy", "parquet", "corpus"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("jsonl", "npy", "parquet", "corpus")

# The HTTP status OpenAI's API answers each error code with.
HTTP_STATUS = {
    "invalid_input": 400, "context_length_exceeded": 400, "auth": 401,
    "budget_exhausted": 402, "not_found": 404, "output_invalid": 422, "rate_limit": 429,
    "internal": 500, "unexpected_response": 500, "provider_down": 503, "timeout": 504,
}  # fmt: skip
_ERROR_TYPE = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               429: "rate_limit_error"}  # fmt: skip
_NPY_HEADER = 128  # bytes of the .npy header, patched with the row count at close
_encode = msgspec.json.Encoder().encode


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
    format: OutputFormat, output: Path, errors: Path, *, batch: BatchInfo
) -> ResultWriter:
    if format not in OUTPUT_FORMATS:
        raise ContractError(f"unknown results format {format!r}: {', '.join(OUTPUT_FORMATS)}")
    if format in ("npy", "parquet") and batch.endpoint != "/v1/embeddings":
        raise ContractError(f"--format {format} holds vectors: it is for embedding batches")
    return ResultWriter(format, Path(output), Path(errors), batch)


class ResultWriter:
    def __init__(self, format: OutputFormat, output: Path, errors: Path, batch: BatchInfo) -> None:
        self._format = format
        self._batch = batch
        self._output_path = output
        self._errors_path = output if format == "corpus" else errors
        self._out: IO[bytes] | None = None
        self._errors: IO[bytes] | None = None
        self._ids: IO[bytes] | None = None
        self._parquet: Any = None
        self._pending: list[tuple[str, bytes]] = []
        self._dimension = 0
        self.succeeded = 0
        self.failed = 0

    def __enter__(self) -> Self:
        self._output_path.parent.mkdir(parents=True, exist_ok=True)
        if self._format == "npy":
            self._out = self._output_path.open("wb")
            self._out.write(b"\0" * _NPY_HEADER)
            self._ids = self._ids_path.open("wb")
        elif self._format in ("jsonl", "corpus"):
            self._out = self._output_path.open("wb")
        if self._format != "corpus":
            self._errors = self._errors_path.open("wb")
        else:
            self._errors = self._out
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._format == "npy" and self._out is not None:
            self._out.seek(0)
            self._out.write(_npy_header(self.succeeded, self._dimension))
        if self._format == "parquet":
            self._flush_parquet()
            if self._parquet is not None:
                self._parquet.close()
        for handle in {self._out, self._errors, self._ids} - {None}:
            assert handle is not None
            handle.close()

    @property
    def _ids_path(self) -> Path:
        return self._output_path.with_name(self._output_path.name + ".ids.jsonl")

    @property
    def written(self) -> WrittenFiles:
        paths = [self._output_path]
        if self._format == "npy":
            paths.append(self._ids_path)
        if self._format != "corpus":
            paths.append(self._errors_path)
        return WrittenFiles(
            paths=[str(p) for p in paths], succeeded=self.succeeded, failed=self.failed
        )

    def write(self, row: RowResult, model: str) -> None:
        if row.error is not None:
            self._write_failed(row.custom_id, row.error, row.request_id)
            return
        self.succeeded += 1
        if self._format == "jsonl":
            self._line(self._out, self._succeeded_line(row, model))
        elif self._format == "corpus":
            vector = floats(row.embedding or b"")
            self._line(self._out, {"custom_id": row.custom_id, "embedding": vector})
        else:
            block = row.embedding or b""
            dimension = len(block) // 4
            if self._dimension and dimension != self._dimension:
                raise ContractError(
                    f"row {row.custom_id!r} has {dimension} numbers, not {self._dimension}"
                )
            self._dimension = dimension
            if self._format == "npy":
                assert self._out is not None
                assert self._ids is not None
                self._out.write(block)
                self._ids.write(_encode(row.custom_id) + b"\n")
            else:
                self._pending.append((row.custom_id, block))
                if len(self._pending) >= 8192:
                    self._flush_parquet()

    def write_error(self, custom_id: str, error: RowError) -> None:
        """A row the batch never ran (cancelled, expired)."""
        self.failed += 1
        if self._format == "corpus":
            self._line(self._errors, {"custom_id": custom_id, "error": _short(error)})
            return
        line = {"id": self._line_id(custom_id), "custom_id": custom_id, "response": None,
                "error": _short(error)}  # fmt: skip
        self._line(self._errors, line)

    def _write_failed(self, custom_id: str, error: RowError, request_id: str | None) -> None:
        self.failed += 1
        if self._format == "corpus":
            self._line(self._errors, {"custom_id": custom_id, "error": _short(error)})
            return
        status = HTTP_STATUS.get(error.code, 500)
        body = {"error": {"message": error.message, "type": _ERROR_TYPE.get(status, "api_error"),
                          "param": None, "code": error.code}}  # fmt: skip
        response = {"status_code": status, "request_id": request_id, "body": body}
        line = {"id": self._line_id(custom_id), "custom_id": custom_id, "response": response,
                "error": None}  # fmt: skip
        self._line(self._errors, line)

    def _succeeded_line(self, row: RowResult, model: str) -> dict[str, Any]:
        usage = row.usage
        prompt = usage.prompt_tokens if usage else 0
        if row.completion is None:
            body: dict[str, Any] = {
                "object": "list",
                "data": [{"object": "embedding", "index": 0,
                          "embedding": floats(row.embedding or b"")}],
                "model": model,
                "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
            }  # fmt: skip
        else:
            completion = row.completion
            message: dict[str, Any] = {"role": "assistant", "content": completion.text}
            if completion.tool_calls:
                message["tool_calls"] = [
                    {"id": c.get("id"), "type": "function",
                     "function": {"name": c.get("name"), "arguments": c.get("arguments")}}
                    for c in completion.tool_calls
                ]  # fmt: skip
            body = {
                "id": f"chatcmpl-{row.request_id or self._line_id(row.custom_id)}",
                "object": "chat.completion",
                "created": int(self._batch.created_at),
                "model": model,
                "choices": [{"index": 0, "message": message,
                             "finish_reason": completion.finish_reason, "logprobs": None}],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": usage.completion_tokens if usage else 0,
                    "total_tokens": usage.total_tokens if usage else 0,
                },
            }  # fmt: skip
        response = {"status_code": 200, "request_id": row.request_id, "body": body}
        return {"id": self._line_id(row.custom_id), "custom_id": row.custom_id,
                "response": response, "error": None}  # fmt: skip

    def _line_id(self, custom_id: str) -> str:
        digest = hashlib.sha256(f"{self._batch.id}\0{custom_id}".encode()).hexdigest()
        return f"batch_req_{digest[:24]}"

    @staticmethod
    def _line(handle: IO[bytes] | None, line: object) -> None:
        assert handle is not None, "the writer is used inside `with`"
        handle.write(_encode(line) + b"\n")

    def _flush_parquet(self) -> None:
        if not self._pending:
            return
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ContractError(
                "writing Parquet needs pyarrow: install the `parquet` extra "
                "(pip install 'ai-job-fleet[parquet]')"
            ) from exc
        schema = pa.schema(
            [("custom_id", pa.string()), ("embedding", pa.list_(pa.float32(), self._dimension))]
        )
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(str(self._output_path), schema)
        ids = [custom_id for custom_id, _ in self._pending]
        values = pa.array(memoryview(b"".join(b for _, b in self._pending)).cast("f"))
        vectors = pa.FixedSizeListArray.from_arrays(values, self._dimension)
        self._parquet.write_table(pa.table({"custom_id": ids, "embedding": vectors}, schema=schema))
        self._pending.clear()


def _short(error: RowError) -> dict[str, str]:
    return {"code": error.code, "message": error.message}


def _npy_header(rows: int, dimension: int) -> bytes:
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dimension}), }}"
    header = text.encode("latin1").ljust(_NPY_HEADER - 10 - 1) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
