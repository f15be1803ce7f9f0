"""Reading a batch's input file into pages of BatchRows, row after row (never the whole file).

Formats, by suffix or ``format=``: JSONL (``.jsonl``, ``.ndjson``) in the OpenAI batch input
shape (``custom_id``, ``method``, ``url``, ``body``) or the short ``{"custom_id", "text"}``
form (embeddings); ``/v1/rerank`` rows take Cohere's and Jina's body; CSV with a
``custom_id,text`` header; Parquet with ``custom_id`` and ``text`` columns
(needs pyarrow: the ``parquet`` extra). One file is one batch: one endpoint, one model, one
vector size. A bad row is a ContractError naming ``path:line`` (``path: row N`` in Parquet)
and what is wrong; a field the fleet would not honour is refused, never dropped. Each
format's lines come from ``input_lines``, a chat body's OpenAI spellings are taken by
``openai_chat_body``.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from contracts.batch import BatchRow, Endpoint
from contracts.codec import encode
from contracts.errors import ContractError
from contracts.rerank import RerankOptions
from producer_sdk.batch.input_lines import InputLine, csv_lines, jsonl_lines, parquet_lines
from producer_sdk.batch.openai_chat_body import chat_body

InputFormat = Literal["jsonl", "csv", "parquet"]
INPUT_FORMATS: Final[tuple[InputFormat, ...]] = ("jsonl", "csv", "parquet")
# `.json` is not among them: such a file is as often one JSON array as JSON lines.
_SUFFIXES: Final[dict[str, InputFormat]] = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet",
}  # fmt: skip
_ENDPOINTS: Final[tuple[Endpoint, ...]] = typing.get_args(Endpoint)
_MAX_CUSTOM_ID: Final = 512  # as BatchRow.custom_id

# /v1/embeddings body fields. `encoding_format` is accepted either way: the download picks
# the output's format. `user` is refused: an embed request has no end user to pass it to
# (EmbedRequest has no such field, no embedding provider is given one), and dropping it
# would let a caller believe the fleet tracks it per user as OpenAI does.
_EMBED_FIELDS: Final = frozenset({"model", "input", "encoding_format", "dimensions"})


class BatchInputReader:
    """The rows of a batch input file, in pages (``pages``). Once the pages have been
    read, ``endpoint``, ``model``, ``dimensions`` and ``rows`` say what the file held
    (``endpoint`` is known from its first row on)."""

    def __init__(
        self,
        path: Path | str,
        *,
        format: str | None = None,
        model: str | None = None,
        dimensions: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.format: InputFormat = _input_format(self.path, format)
        if not self.path.is_file():
            raise ContractError(f"{self.path}: no such file")
        self._given_model = model
        self._given_dimensions = dimensions
        self.endpoint: Endpoint | None = None
        self.model = model
        self.dimensions = dimensions
        self.rows = 0
        self._seen: set[str] = set()

    def pages(self, *, max_rows: int, max_bytes: int) -> Iterator[list[BatchRow]]:
        """The rows in file order, in pages of at most ``max_rows`` rows whose rows take at
        most ``max_bytes`` as msgpack (a page is one Kafka record): a row larger than that is
        refused. Each call reads the file again from its start."""
        if max_rows < 1 or max_bytes < 1:
            raise ValueError("a page holds at least one row and one byte")
        self._restart()
        page: list[BatchRow] = []
        size = 0
        for where, line in self._lines():
            row = self._row(where, line)
            row_size = len(encode(row))
            if row_size > max_bytes:
                raise ContractError(
                    f"{where}: the row takes {row_size} bytes, more than the {max_bytes} "
                    "a page of the batch may hold"
                )
            if page and (len(page) >= max_rows or size + row_size > max_bytes):
                yield page
                page, size = [], 0
            page.append(row)
            size += row_size
        if page:
            yield page
        if self.rows == 0:
            raise ContractError(f"{self.path}: the file holds no rows")

    def _restart(self) -> None:
        self.endpoint = None
        self.model = self._given_model
        self.dimensions = self._given_dimensions
        self.rows = 0
        self._seen.clear()

    def _lines(self) -> Iterator[tuple[str, InputLine]]:
        if self.format == "jsonl":
            return jsonl_lines(self.path)
        if self.format == "csv":
            return csv_lines(self.path)
        return parquet_lines(self.path)

    def _row(self, where: str, line: InputLine) -> BatchRow:
        custom_id = self._custom_id(where, line.custom_id)
        if line.body is None and line.method is None and line.url is None:
            if line.text is None:
                raise ContractError(
                    f"{where}: no `text`: a row is {{custom_id, text}} or "
                    "{custom_id, method, url, body}"
                )
            self._endpoint(where, "/v1/embeddings")
            row = BatchRow(custom_id=custom_id, text=line.text)
        else:
            row = self._openai_row(where, custom_id, line)
        self.rows += 1
        return row

    def _custom_id(self, where: str, custom_id: str | None) -> str:
        if not custom_id:
            raise ContractError(f"{where}: `custom_id` is missing or empty")
        if len(custom_id) > _MAX_CUSTOM_ID:
            raise ContractError(
                f"{where}: `custom_id` has {len(custom_id)} characters, more than {_MAX_CUSTOM_ID}"
            )
        if custom_id in self._seen:
            raise ContractError(f"{where}: duplicate custom_id {custom_id!r}")
        self._seen.add(custom_id)
        return custom_id

    def _openai_row(self, where: str, custom_id: str, line: InputLine) -> BatchRow:
        if line.text is not None:
            raise ContractError(f"{where}: give `text` or `method`, `url` and `body`, not both")
        if line.method not in (None, "POST"):
            raise ContractError(f'{where}: `method` must be "POST", not {line.method!r}')
        endpoint = next((e for e in _ENDPOINTS if e == line.url), None)
        if endpoint is None:
            raise ContractError(
                f"{where}: `url` {line.url!r} is not one the fleet serves in a batch "
                f"({', '.join(_ENDPOINTS)})"
            )
        if line.body is None:
            raise ContractError(f"{where}: `body` is missing")
        self._endpoint(where, endpoint)
        body = dict(line.body)
        self._model(where, body.pop("model", None))
        if endpoint == "/v1/chat/completions":
            return BatchRow(custom_id=custom_id, chat=chat_body(where, body))
        if endpoint == "/v1/rerank":
            return BatchRow(custom_id=custom_id, rerank=_rerank_body(where, body))
        return BatchRow(custom_id=custom_id, text=self._embed_text(where, body))

    def _embed_text(self, where: str, body: dict[str, Any]) -> str:
        unknown = sorted(set(body) - _EMBED_FIELDS)
        if "user" in unknown:
            raise ContractError(
                f"{where}: body field `user` is refused: the fleet passes no end user to "
                "embedding models (remove it)"
            )
        if unknown:
            raise ContractError(
                f"{where}: body field `{unknown[0]}` is not one the fleet honours in an "
                f"embeddings row ({', '.join(sorted(_EMBED_FIELDS))})"
            )
        text = body.get("input")
        if isinstance(text, list):
            if len(text) != 1:
                raise ContractError(
                    f"{where}: `input` holds {len(text)} items: one row, one text "
                    "(give each text a row and a custom_id of its own)"
                )
            text = text[0]
        if not isinstance(text, str):
            raise ContractError(f"{where}: `input` must be a string (or a list of one string)")
        if body.get("encoding_format", "float") not in ("float", "base64"):
            raise ContractError(f'{where}: `encoding_format` must be "float" or "base64"')
        if "dimensions" in body:
            self._dimensions(where, body["dimensions"])
        return text

    def _endpoint(self, where: str, endpoint: Endpoint) -> None:
        if self.endpoint not in (None, endpoint):
            raise ContractError(
                f"{where}: the row asks for {endpoint}, the rows before it for "
                f"{self.endpoint}: one batch, one endpoint"
            )
        if endpoint != "/v1/embeddings" and self.dimensions is not None:
            raise ContractError(f"{where}: `dimensions` is for embeddings, not {endpoint}")
        self.endpoint = endpoint

    def _model(self, where: str, model: object) -> None:
        if model is None:
            return
        if not isinstance(model, str) or not model:
            raise ContractError(f"{where}: `model` must be a non-empty string")
        if self.model not in (None, model):
            given = "the batch was given" if self._given_model else "the rows before it name"
            raise ContractError(
                f"{where}: the row names model {model!r}, {given} {self.model!r}: one "
                "batch, one model"
            )
        self.model = model

    def _dimensions(self, where: str, dimensions: object) -> None:
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
            raise ContractError(f"{where}: `dimensions` must be a positive integer")
        if self.dimensions not in (None, dimensions):
            given = "the batch was given" if self._given_dimensions else "the rows before it ask"
            raise ContractError(
                f"{where}: the row asks for {dimensions} dimensions, {given} "
                f"{self.dimensions}: one batch, one vector size"
            )
        self.dimensions = dimensions


def _rerank_body(where: str, body: dict[str, Any]) -> RerankOptions:
    """A ``/v1/rerank`` body (Cohere's v2 and Jina's v1 fields) as the rerank options; a
    field the fleet does not honour is refused, named."""
    try:
        return msgspec.convert(body, RerankOptions)
    except msgspec.ValidationError as exc:
        raise ContractError(f"{where}: {exc}") from exc


def _input_format(path: Path, format: str | None) -> InputFormat:
    if format is not None:
        for known in INPUT_FORMATS:
            if format == known:
                return known
        raise ContractError(f"unknown input format {format!r}: {', '.join(INPUT_FORMATS)}")
    by_suffix = _SUFFIXES.get(path.suffix.lower())
    if by_suffix is None:
        raise ContractError(
            f"{path}: cannot tell the format from the name ({', '.join(_SUFFIXES)}): "
            f"give one of {', '.join(INPUT_FORMATS)}"
        )
    return by_suffix
