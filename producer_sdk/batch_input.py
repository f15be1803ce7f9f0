"""Reading a batch's input file into pages of BatchRows, row after row (never the whole file).

Formats, by suffix or ``format=``: JSONL (``.jsonl``, ``.ndjson``) in the OpenAI batch input
shape (``custom_id``, ``method``, ``url``, ``body``) or the short ``{"custom_id", "text"}``
form; CSV with a ``custom_id,text`` header; Parquet with ``custom_id`` and ``text`` columns
(needs pyarrow: the ``parquet`` extra). One file is one batch: one endpoint, one model, one
vector size. A bad row is a ContractError naming ``path:line`` (``path: row N`` in Parquet)
and what is wrong; a field the fleet would not honour is refused, never dropped.
"""

from __future__ import annotations

import csv
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Final, Literal

import msgspec

from contracts.batch import BatchRow, ChatBody, Endpoint
from contracts.codec import encode
from contracts.errors import ContractError

InputFormat = Literal["jsonl", "csv", "parquet"]
INPUT_FORMATS: Final[tuple[InputFormat, ...]] = ("jsonl", "csv", "parquet")
# `.json` is not among them: such a file is as often one JSON array as JSON lines.
_SUFFIXES: Final[dict[str, InputFormat]] = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet",
}  # fmt: skip
_ENDPOINTS: Final[tuple[Endpoint, ...]] = typing.get_args(Endpoint)
_COLUMNS: Final = ("custom_id", "text")
_MAX_CUSTOM_ID: Final = 512  # as BatchRow.custom_id
_PARQUET_BATCH_ROWS: Final = 4096

# /v1/embeddings body fields. `encoding_format` is accepted either way: the download picks
# the output's format. `user` is refused: an embed request has no end user to pass it to
# (EmbedRequest has no such field, no embedding provider is given one), and dropping it
# would let a caller believe the fleet tracks it per user as OpenAI does.
_EMBED_FIELDS: Final = frozenset({"model", "input", "encoding_format", "dimensions"})
# /v1/chat/completions fields the fleet takes only at the value that changes nothing.
_CHAT_DEFAULT_ONLY: Final[Mapping[str, tuple[object, str]]] = {
    "n": (1, "one row is one answer"),
    "stream": (False, "a batch row's answer is not streamed"),
    "logprobs": (False, "the fleet returns no log probabilities"),
}
_CHAT_FIELDS: Final = frozenset(ChatBody.__struct_fields__)


class _Line(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One JSONL line: the OpenAI shape (method, url, body) or the short one (text)."""

    custom_id: str | None = None
    method: str | None = None
    url: str | None = None
    body: dict[str, Any] | None = None
    text: str | None = None


_line_decoder: Final = msgspec.json.Decoder(_Line)


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

    def _lines(self) -> Iterator[tuple[str, _Line]]:
        if self.format == "jsonl":
            return _jsonl_lines(self.path)
        if self.format == "csv":
            return _csv_lines(self.path)
        return _parquet_lines(self.path)

    def _row(self, where: str, line: _Line) -> BatchRow:
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

    def _openai_row(self, where: str, custom_id: str, line: _Line) -> BatchRow:
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
            return BatchRow(custom_id=custom_id, chat=_chat_body(where, body))
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


def _chat_body(where: str, body: dict[str, Any]) -> ChatBody:
    for field, (harmless, why) in _CHAT_DEFAULT_ONLY.items():
        if field in body:
            value = body.pop(field)
            if value != harmless or type(value) is not type(harmless):
                raise ContractError(
                    f"{where}: body field `{field}` must be {_json(harmless)} if given, not "
                    f"{_json(value)}: {why}"
                )
    if "max_completion_tokens" in body:  # OpenAI's newer name for max_tokens
        tokens = body.pop("max_completion_tokens")
        if body.setdefault("max_tokens", tokens) != tokens:
            raise ContractError(f"{where}: `max_tokens` and `max_completion_tokens` differ")
    unknown = sorted(set(body) - _CHAT_FIELDS)
    if unknown:
        raise ContractError(
            f"{where}: body field `{unknown[0]}` is not one the fleet honours in a chat row "
            "(refused rather than dropped)"
        )
    try:
        return msgspec.convert(_from_openai_shapes(where, body), ChatBody)
    except msgspec.ValidationError as exc:
        raise ContractError(f"{where}: body: {exc}") from exc


def _from_openai_shapes(where: str, body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's spellings where the contract's differ: a function tool, a named
    tool_choice and an assistant's tool calls nest their name in a ``function`` object, an
    assistant turn of tool calls alone may have ``content: null``, and ``stop`` may be one
    string. The contract's own spellings pass as they are."""
    if isinstance(body.get("stop"), str):
        body["stop"] = [body["stop"]]
    if isinstance(body.get("tools"), list):
        body["tools"] = [_tool(where, i, tool) for i, tool in enumerate(body["tools"])]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        body["tool_choice"] = _function(where, "tool_choice", choice, {"name"})
    if isinstance(body.get("messages"), list):
        body["messages"] = [_message(where, i, m) for i, m in enumerate(body["messages"])]
    return body


def _tool(where: str, index: int, tool: object) -> object:
    if not isinstance(tool, dict) or "type" not in tool:
        return tool  # the contract's {name, description, parameters}, checked by convert
    if tool["type"] != "function":
        raise ContractError(
            f"{where}: `tools[{index}]` is of type {_json(tool['type'])}: the fleet serves "
            "function tools only"
        )
    fields = {"name", "description", "parameters", "strict"}
    function = _function(where, f"tools[{index}]", tool, fields)
    if function.pop("strict", False) is not False:
        raise ContractError(
            f"{where}: `tools[{index}].function.strict` is not honoured (the arguments are "
            "not constrained to the schema): remove it"
        )
    return function


def _message(where: str, index: int, message: object) -> object:
    if not isinstance(message, dict) or not isinstance(message.get("tool_calls"), list):
        return message
    message = dict(message)
    calls = []
    for i, call in enumerate(message["tool_calls"]):
        if isinstance(call, dict) and "function" in call:
            label = f"messages[{index}].tool_calls[{i}]"
            function = _function(where, label, call, {"name", "arguments"})
            call = {"id": call.get("id"), **function}
        calls.append(call)
    message["tool_calls"] = calls
    if message.get("content") is None:
        message["content"] = ""
    return message


def _function(where: str, label: str, holder: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    """The ``function`` object of an OpenAI tool, tool choice or tool call, whose other
    keys may only be ``type: "function"`` (and a call's ``id``)."""
    if holder.get("type", "function") != "function":
        raise ContractError(f'{where}: `{label}.type` must be "function"')
    if other := sorted(set(holder) - {"type", "function", "id"}):
        raise ContractError(f"{where}: `{label}.{other[0]}` is not one the fleet honours")
    function = holder.get("function")
    if not isinstance(function, dict):
        raise ContractError(f"{where}: `{label}.function` must be an object")
    if other := sorted(set(function) - fields):
        raise ContractError(f"{where}: `{label}.function.{other[0]}` is not one the fleet honours")
    return dict(function)


def _json(value: object) -> str:
    return msgspec.json.encode(value).decode()


def _jsonl_lines(path: Path) -> Iterator[tuple[str, _Line]]:
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                yield where, _line_decoder.decode(line)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise ContractError(f"{where}: {exc}") from exc


def _csv_lines(path: Path) -> Iterator[tuple[str, _Line]]:
    with path.open("rb") as binary:
        lines = _NumberedLines(path, binary)
        records = csv.reader(lines, strict=True)
        ended = 0  # the last line of the record before
        try:
            header = next(records, None)
            if header is None:
                raise ContractError(f"{path}: the file holds no rows")
            _check_columns(f"{path}:1", header, "a CSV batch")
            id_at, text_at = header.index("custom_id"), header.index("text")
            ended = lines.number
            for record in records:
                # Named by its first line (a quoted text may go on over several).
                where, ended = f"{path}:{ended + 1}", lines.number
                if not record:
                    continue
                if len(record) != len(header):
                    raise ContractError(
                        f"{where}: {len(record)} fields, the header has {len(header)} (a text "
                        "that holds a comma, a quote or a line break must be quoted)"
                    )
                yield where, _Line(custom_id=record[id_at], text=record[text_at])
        except csv.Error as exc:
            raise ContractError(f"{path}:{ended + 1}: not CSV: {exc}") from exc


class _NumberedLines:
    """A file's lines as text, counted, so that an error names its line (the csv module
    counts records, and a decoder reading blocks cannot say where a bad byte was)."""

    def __init__(self, path: Path, binary: IO[bytes]) -> None:
        self._path = path
        self._binary = binary
        self.number = 0

    def __iter__(self) -> Iterator[str]:
        for number, raw in enumerate(self._binary, start=1):
            self.number = number
            try:
                # utf-8-sig: spreadsheets put a byte order mark before the header.
                yield raw.decode("utf-8-sig" if self.number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise ContractError(
                    f"{self._path}:{self.number}: not UTF-8 text ({exc.reason} at byte "
                    f"{exc.start + 1} of the line)"
                ) from exc


def _check_columns(where: str, columns: list[str], what: str) -> None:
    missing = [c for c in _COLUMNS if c not in columns]
    if missing:
        raise ContractError(
            f"{where}: {what} needs the columns custom_id and text; missing: {', '.join(missing)}"
        )
    other = sorted(set(columns) - set(_COLUMNS))
    if other:
        raise ContractError(
            f"{where}: {what} has the columns custom_id and text only, not "
            f"{', '.join(repr(c) for c in other)} (refused rather than ignored: drop them)"
        )
    if len(columns) != len(_COLUMNS):
        raise ContractError(f"{where}: {what} names a column twice")


def _parquet_lines(path: Path) -> Iterator[tuple[str, _Line]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ContractError(
            "reading Parquet needs pyarrow: install the `parquet` extra "
            "(pip install 'ai-job-fleet[parquet]')"
        ) from exc
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise ContractError(f"{path}: not a Parquet file: {exc}") from exc
    schema = parquet.schema_arrow
    _check_columns(str(path), list(schema.names), "a Parquet batch")
    for column in _COLUMNS:
        kind = schema.field(column).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise ContractError(f"{path}: column {column} holds {kind}, not strings")
    number = 0
    with parquet:
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=list(_COLUMNS)):
            ids = batch.column("custom_id").to_pylist()
            texts = batch.column("text").to_pylist()
            for custom_id, text in zip(ids, texts, strict=True):
                number += 1
                where = f"{path}: row {number}"
                if text is None:
                    raise ContractError(f"{where}: `text` is null")
                yield where, _Line(custom_id=custom_id, text=text)
