"""Reading a batch's input file, row after row, into BatchRows (never the whole file at once).

Formats, by suffix or ``format=``: JSONL (``.jsonl``/``.ndjson``) in the OpenAI batch input
shape (``custom_id``, ``method``, ``url``, ``body``) or the short ``{"custom_id", "text"}``
form; CSV with a ``custom_id,text`` header; Parquet with ``custom_id`` and ``text`` columns
(needs pyarrow: the ``parquet`` extra). Every row of a file asks for one endpoint and names
one model (or none, for the caller to give). A bad row is a ContractError naming
``file:line`` and what is wrong; a field the fleet would not honour is refused, not dropped.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import msgspec

from contracts.batch import ENDPOINT_KIND, BatchRow, ChatBody, Endpoint
from contracts.codec import encode
from contracts.errors import ContractError

InputFormat = Literal["jsonl", "csv", "parquet"]
_SUFFIXES: dict[str, InputFormat] = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet",
}  # fmt: skip
# Embeddings body fields: `encoding_format` is accepted (the download chooses the output's
# format), `user` is accepted and passed on nowhere: no embedding provider of the fleet
# tracks end users, so it is refused rather than dropped.
_EMBED_FIELDS = {"model", "input", "encoding_format", "dimensions"}


class _Line(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    custom_id: str
    method: str | None = None
    url: str | None = None
    body: dict[str, Any] | None = None
    text: str | None = None


_line_decoder = msgspec.json.Decoder(_Line)


class BatchInputReader:
    """``for page in reader.pages(max_rows=..., max_bytes=...)``; then ``endpoint``,
    ``model``, ``dimensions`` and ``rows`` say what the file held."""

    def __init__(
        self,
        path: Path,
        *,
        format: str | None = None,
        model: str | None = None,
        dimensions: int | None = None,
    ) -> None:
        self.path = Path(path)
        formats: dict[str, InputFormat] = {"jsonl": "jsonl", "csv": "csv", "parquet": "parquet"}
        chosen = formats.get(format) if format else _SUFFIXES.get(self.path.suffix.lower())
        if chosen is None:
            raise ContractError(
                f"{self.path}: cannot tell the format from the name: give --format "
                "jsonl, csv or parquet"
            )
        if not self.path.is_file():
            raise ContractError(f"{self.path}: no such file")
        self.format: InputFormat = chosen
        self.endpoint: Endpoint | None = None
        self.model = model
        self.dimensions = dimensions
        self.rows = 0
        self._seen: set[str] = set()

    def pages(self, *, max_rows: int, max_bytes: int) -> Iterator[list[BatchRow]]:
        """The rows in file order, in pages of at most ``max_rows`` rows and about
        ``max_bytes`` bytes (as msgpack)."""
        page: list[BatchRow] = []
        size = 0
        for where, raw in self._raw_rows():
            row = self._row(where, raw)
            row_size = len(encode(row))
            if page and (len(page) >= max_rows or size + row_size > max_bytes):
                yield page
                page, size = [], 0
            page.append(row)
            size += row_size
        if page:
            yield page
        if self.rows == 0:
            raise ContractError(f"{self.path}: the file holds no rows")

    def _raw_rows(self) -> Iterator[tuple[str, _Line]]:
        if self.format == "jsonl":
            with self.path.open("rb") as lines:
                for number, line in enumerate(lines, start=1):
                    if not line.strip():
                        continue
                    where = f"{self.path}:{number}"
                    try:
                        yield where, _line_decoder.decode(line)
                    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                        raise ContractError(f"{where}: {exc}") from exc
        elif self.format == "csv":
            with self.path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                if reader.fieldnames is None or not {"custom_id", "text"} <= set(reader.fieldnames):
                    raise ContractError(
                        f"{self.path}:1: a CSV batch needs the columns custom_id,text"
                    )
                for record in reader:
                    where = f"{self.path}:{reader.line_num}"
                    yield where, _Line(custom_id=record["custom_id"] or "", text=record["text"])
        else:
            yield from self._parquet_rows()

    def _parquet_rows(self) -> Iterator[tuple[str, _Line]]:
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ContractError(
                "reading Parquet needs pyarrow: install the `parquet` extra "
                "(pip install 'ai-job-fleet[parquet]')"
            ) from exc
        table = pq.ParquetFile(self.path)
        names = set(table.schema_arrow.names)
        if not {"custom_id", "text"} <= names:
            raise ContractError(f"{self.path}: a Parquet batch needs the columns custom_id, text")
        number = 0
        for batch in table.iter_batches(columns=["custom_id", "text"], batch_size=4096):
            ids, texts = batch.column(0).to_pylist(), batch.column(1).to_pylist()
            for custom_id, text in zip(ids, texts, strict=True):
                number += 1
                yield f"{self.path}: row {number}", _Line(custom_id=str(custom_id or ""), text=text)

    def _row(self, where: str, line: _Line) -> BatchRow:
        if not line.custom_id:
            raise ContractError(f"{where}: `custom_id` is missing or empty")
        if len(line.custom_id) > 512:
            raise ContractError(f"{where}: `custom_id` is longer than 512 characters")
        if line.custom_id in self._seen:
            raise ContractError(f"{where}: duplicate custom_id {line.custom_id!r}")
        self._seen.add(line.custom_id)
        if line.body is None:
            if line.text is None or line.url is not None or line.method is not None:
                raise ContractError(
                    f"{where}: a row is {{custom_id, text}} or {{custom_id, method, url, body}}"
                )
            row = BatchRow(custom_id=line.custom_id, text=line.text)
            self._endpoint(where, "/v1/embeddings")
        else:
            row = self._openai_row(where, line)
        self.rows += 1
        return row

    def _openai_row(self, where: str, line: _Line) -> BatchRow:
        if line.text is not None:
            raise ContractError(f"{where}: give `text` or `body`, not both")
        if line.method not in (None, "POST"):
            raise ContractError(f"{where}: `method` must be POST, not {line.method!r}")
        if line.url not in ENDPOINT_KIND:
            raise ContractError(
                f"{where}: `url` {line.url!r} is not one the fleet serves "
                f"({', '.join(ENDPOINT_KIND)})"
            )
        self._endpoint(where, line.url)  # type: ignore[arg-type]
        body = dict(line.body or {})
        self._model(where, body.pop("model", None))
        if line.url == "/v1/chat/completions":
            try:
                chat = msgspec.convert(body, ChatBody)
            except msgspec.ValidationError as exc:
                raise ContractError(f"{where}: body: {exc}") from exc
            return BatchRow(custom_id=line.custom_id, chat=chat)
        unknown = sorted(set(body) - _EMBED_FIELDS)
        if unknown:
            raise ContractError(f"{where}: body field {unknown[0]!r} is not supported in a batch")
        text = body.get("input")
        if isinstance(text, list):
            if len(text) != 1:
                raise ContractError(f"{where}: `input` holds {len(text)} texts: one row, one text")
            text = text[0]
        if not isinstance(text, str):
            raise ContractError(f"{where}: `input` must be a string")
        if body.get("encoding_format", "float") not in ("float", "base64"):
            raise ContractError(f"{where}: `encoding_format` must be float or base64")
        if (dimensions := body.get("dimensions")) is not None:
            if not isinstance(dimensions, int) or dimensions < 1:
                raise ContractError(f"{where}: `dimensions` must be a positive integer")
            if self.dimensions not in (None, dimensions):
                raise ContractError(
                    f"{where}: `dimensions` {dimensions} differs from {self.dimensions}: one "
                    "batch, one vector size"
                )
            self.dimensions = dimensions
        return BatchRow(custom_id=line.custom_id, text=text)

    def _endpoint(self, where: str, endpoint: Endpoint) -> None:
        if self.endpoint not in (None, endpoint):
            raise ContractError(
                f"{where}: this row asks for {endpoint}, the rows before it for "
                f"{self.endpoint}: one batch, one endpoint"
            )
        self.endpoint = endpoint

    def _model(self, where: str, model: object) -> None:
        if model is None:
            return
        if not isinstance(model, str) or not model:
            raise ContractError(f"{where}: `model` must be a non-empty string")
        if self.model not in (None, model):
            raise ContractError(
                f"{where}: the row names model {model!r}, the batch {self.model!r}: one "
                "batch, one model"
            )
        self.model = model
