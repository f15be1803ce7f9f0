"""Each input format's rows as lines of one shape (``InputLine``), each named by where it is
(``path:line``, or ``path: row N`` in Parquet): JSONL, CSV with a ``custom_id,text``
header, Parquet with ``custom_id`` and ``text`` columns (needs pyarrow)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final

import msgspec

from contracts.errors import ContractError

_COLUMNS: Final = ("custom_id", "text")
_PARQUET_BATCH_ROWS: Final = 4096


class InputLine(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One row as the file holds it: the OpenAI shape (method, url, body) or the short one
    (text); CSV and Parquet rows are the short one."""

    custom_id: str | None = None
    method: str | None = None
    url: str | None = None
    body: dict[str, Any] | None = None
    text: str | None = None


_line_decoder: Final = msgspec.json.Decoder(InputLine)


def jsonl_lines(path: Path) -> Iterator[tuple[str, InputLine]]:
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                yield where, _line_decoder.decode(line)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise ContractError(f"{where}: {exc}") from exc


def csv_lines(path: Path) -> Iterator[tuple[str, InputLine]]:
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
                yield where, InputLine(custom_id=record[id_at], text=record[text_at])
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


def parquet_lines(path: Path) -> Iterator[tuple[str, InputLine]]:
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
                yield where, InputLine(custom_id=custom_id, text=text)
