"""The files of batch jobs: input files read into pages of rows (JSONL in the OpenAI shape or
the short one, CSV, Parquet), and results written in the OpenAI batch output shape, as .npy,
as Parquet, or in the corpus format."""

from __future__ import annotations

import array
import collections
import csv
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts.batch import (
    BatchInfo,
    BatchRow,
    Completion,
    Endpoint,
    RequestCounts,
    RowError,
    RowResult,
)
from contracts.codec import encode
from contracts.embed_parts import float32_values
from contracts.errors import ContractError
from contracts.generate import NamedToolChoice, ToolCall, ToolSpec
from contracts.response_format import ResponseFormatJsonObject
from contracts.usage import Usage
from producer_sdk.batch import result_writer as batch_output
from producer_sdk.batch.input_reader import BatchInputReader
from producer_sdk.batch.openai_output_lines import HTTP_STATUS
from producer_sdk.batch.result_writer import WrittenFiles, open_result_writer

json_line = msgspec.json.encode


def write_lines(path: Path, *lines: object) -> Path:
    """Objects as JSON lines (a str is written as it is: a line that is not JSON)."""
    with path.open("wb") as out:
        for line in lines:
            out.write((line.encode() if isinstance(line, str) else json_line(line)) + b"\n")
    return path


def embed_line(custom_id: str, text: str | list[str], **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "m", "input": text, **body},
    }


def chat_line(custom_id: str, **body: Any) -> dict[str, Any]:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def read(path: Path, **options: Any) -> tuple[BatchInputReader, list[BatchRow]]:
    reader = BatchInputReader(path, **options)
    rows = [row for page in reader.pages(max_rows=100, max_bytes=1 << 20) for row in page]
    return reader, rows


def refusal(path: Path, **options: Any) -> str:
    with pytest.raises(ContractError) as caught:
        read(path, **options)
    return str(caught.value)


# Reading: JSONL


def test_openai_embedding_rows_and_short_rows_are_read_in_file_order(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "in.jsonl",
        embed_line("a", "first", encoding_format="base64", dimensions=8),
        {"custom_id": "b", "text": "second"},
        "",
        embed_line("c", ["third"], encoding_format="float"),
    )
    reader, rows = read(path)
    assert rows == [
        BatchRow(custom_id="a", text="first"),
        BatchRow(custom_id="b", text="second"),
        BatchRow(custom_id="c", text="third"),
    ]
    assert (reader.endpoint, reader.model, reader.dimensions, reader.rows) == (
        "/v1/embeddings",
        "m",
        8,
        3,
    )


def test_short_rows_take_the_model_the_caller_gives(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.ndjson", {"custom_id": "a", "text": "x"})
    reader, _ = read(path, model="all-minilm-l6-v2", dimensions=16)
    assert (reader.model, reader.dimensions, reader.format) == ("all-minilm-l6-v2", 16, "jsonl")


def test_chat_rows_carry_every_field_of_the_body(tmp_path: Path) -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"a": 1}}}
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
    ]
    path = write_lines(
        tmp_path / "chat.jsonl",
        chat_line(
            "a",
            messages=messages,
            max_completion_tokens=50,
            temperature=0.5,
            top_p=0.9,
            stop="END",
            seed=7,
            presence_penalty=0.1,
            frequency_penalty=-0.1,
            user="u-1",
            tools=[tool],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            response_format={"type": "json_object"},
            n=1,
            stream=False,
            logprobs=False,
        ),
        chat_line("b", tools=[{"name": "flat", "description": "the contract's shape"}]),
    )
    reader, (row, flat) = read(path)
    assert reader.endpoint == "/v1/chat/completions"
    assert reader.model == "m"
    chat = row.chat
    assert chat is not None
    assert row.text is None
    assert [m.role for m in chat.messages] == ["system", "user", "assistant", "tool"]
    assert chat.messages[2].tool_calls == [ToolCall(id="c1", name="get_weather", arguments="{}")]
    assert chat.messages[2].content == ""
    assert chat.messages[3].tool_call_id == "c1"
    assert (chat.max_tokens, chat.temperature, chat.top_p, chat.stop) == (50, 0.5, 0.9, ["END"])
    assert (chat.seed, chat.presence_penalty, chat.frequency_penalty) == (7, 0.1, -0.1)
    assert chat.user == "u-1"
    assert chat.tools == [ToolSpec(name="get_weather", parameters={"a": 1})]
    assert chat.tool_choice == NamedToolChoice(name="get_weather")
    assert chat.response_format == ResponseFormatJsonObject()
    assert flat.chat is not None
    assert flat.chat.tools == [ToolSpec(name="flat", description="the contract's shape")]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"n": 2}, "`n` must be 1 if given, not 2: one row is one answer"),
        ({"stream": True}, "`stream` must be false if given, not true"),
        ({"logprobs": True}, "`logprobs` must be false if given, not true"),
        ({"n": True}, "`n` must be 1 if given, not true"),
        ({"top_logprobs": 3}, "body field `top_logprobs` is not one the fleet honours"),
        ({"stream_options": {}}, "body field `stream_options` is not one the fleet honours"),
        ({"max_tokens": 5, "max_completion_tokens": 6}, "`max_completion_tokens` differ"),
        ({"temperature": 3}, "body: Expected `float` <= 2.0 - at `$.temperature`"),
        ({"messages": []}, "body: Expected `array` of length >= 1 - at `$.messages`"),
        (
            {"messages": [{"role": "user", "content": "hi", "audio": {"id": "a"}}]},
            "body: Object contains unknown field `audio` - at `$.messages[0]`",
        ),
        ({"tools": [{"type": "web_search"}]}, "the fleet serves function tools only"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "strict": True}}]},
            "`tools[0].function.strict` is not honoured",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "x": 1}}]},
            "`tools[0].function.x` is not one the fleet honours",
        ),
    ],
)
def test_a_chat_field_the_fleet_does_not_honour_is_refused_naming_it(
    tmp_path: Path, body: dict[str, Any], named: str
) -> None:
    path = write_lines(tmp_path / "chat.jsonl", chat_line("a"), chat_line("b", **body))
    message = refusal(path)
    assert message.startswith(f"{path}:2: ")
    assert named in message


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"user": "u-1"}, "body field `user` is refused: the fleet passes no end user"),
        ({"input": ["a", "b"]}, "`input` holds 2 items: one row, one text"),
        ({"input": []}, "`input` holds 0 items"),
        ({"input": [1, 2]}, "`input` holds 2 items"),
        ({"input": [17]}, "`input` must be a string"),
        ({"encoding_format": "int8"}, '`encoding_format` must be "float" or "base64"'),
        ({"dimensions": 0}, "`dimensions` must be a positive integer"),
        ({"dimensions": "8"}, "`dimensions` must be a positive integer"),
        ({"truncate": True}, "body field `truncate` is not one the fleet honours"),
        ({"model": ""}, "`model` must be a non-empty string"),
    ],
)
def test_an_embeddings_field_the_fleet_does_not_honour_is_refused_naming_it(
    tmp_path: Path, body: dict[str, Any], named: str
) -> None:
    path = write_lines(tmp_path / "in.jsonl", embed_line("a", "x"), embed_line("b", "y", **body))
    message = refusal(path)
    assert message.startswith(f"{path}:2: ")
    assert named in message


@pytest.mark.parametrize(
    ("second", "named"),
    [
        ("{not json", "JSON is malformed"),
        ({"text": "y"}, "`custom_id` is missing or empty"),
        ({"custom_id": "", "text": "y"}, "`custom_id` is missing or empty"),
        ({"custom_id": 7, "text": "y"}, "Expected `str | null`, got `int` - at `$.custom_id`"),
        ({"custom_id": "x" * 513, "text": "y"}, "`custom_id` has 513 characters, more than 512"),
        ({"custom_id": "a", "text": "again"}, "duplicate custom_id 'a'"),
        ({"custom_id": "b"}, "no `text`: a row is {custom_id, text} or"),
        ({"custom_id": "b", "text": "y", "lang": "en"}, "unknown field `lang`"),
        ({**embed_line("b", "y"), "text": "y"}, "give `text` or `method`, `url` and `body`"),
        ({**embed_line("b", "y"), "method": "GET"}, "`method` must be \"POST\", not 'GET'"),
        ({**embed_line("b", "y"), "url": "/v1/completions"}, "`url` '/v1/completions' is not"),
        ({**embed_line("b", "y"), "body": None}, "`body` is missing"),
        (chat_line("b"), "asks for /v1/chat/completions, the rows before it for /v1/embeddings"),
        (embed_line("b", "y") | {"body": {"model": "other", "input": "y"}}, "model 'other'"),
        (embed_line("b", "y", dimensions=4), "asks for 4 dimensions, the rows before it ask 8"),
    ],
)
def test_a_bad_line_is_refused_naming_its_line(tmp_path: Path, second: object, named: str) -> None:
    path = write_lines(tmp_path / "in.jsonl", embed_line("a", "x", dimensions=8), second)
    message = refusal(path)
    assert message.startswith(f"{path}:2: ")
    assert named in message


def test_text_is_utf8_and_a_line_that_is_not_is_named(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", {"custom_id": "a", "text": "ünïcödé ✓"})
    assert read(path)[1] == [BatchRow(custom_id="a", text="ünïcödé ✓")]
    with path.open("ab") as out:
        out.write(b'{"custom_id": "b", "text": "caf\xe9"}\n')
    assert refusal(path).startswith(f"{path}:2: Invalid UTF-8")


def test_the_model_and_dimensions_must_agree_with_the_callers(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", embed_line("a", "x", dimensions=8))
    assert "the row names model 'm', the batch was given 'e5'" in refusal(path, model="e5")
    assert "asks for 8 dimensions, the batch was given 16" in refusal(path, dimensions=16)
    assert read(path, model="m", dimensions=8)[0].rows == 1


def test_dimensions_are_for_embedding_batches(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "chat.jsonl", chat_line("a"))
    assert f"{path}:1: `dimensions` is for embeddings" in refusal(path, dimensions=8)


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", "", "  ")
    assert refusal(path) == f"{path}: the file holds no rows"


def test_pages_are_bounded_by_rows_and_by_encoded_size(tmp_path: Path) -> None:
    texts = [f"text {i} " + "x" * (i * 37 % 300) for i in range(250)]
    path = write_lines(
        tmp_path / "in.jsonl", *({"custom_id": f"r{i}", "text": t} for i, t in enumerate(texts))
    )
    reader = BatchInputReader(path)
    by_rows = list(reader.pages(max_rows=64, max_bytes=1 << 20))
    assert [len(p) for p in by_rows] == [64, 64, 64, 58]
    by_bytes = list(reader.pages(max_rows=1000, max_bytes=4096))  # read again from the start
    assert all(sum(len(encode(r)) for r in page) <= 4096 for page in by_bytes)
    assert len(by_bytes) > 4
    for pages in (by_rows, by_bytes):
        assert [r.text for page in pages for r in page] == texts
    assert reader.rows == 250


def test_a_page_ends_where_the_next_row_would_pass_max_bytes(tmp_path: Path) -> None:
    rows = ({"custom_id": f"r{i}", "text": "x" * 400} for i in range(4))
    pages = BatchInputReader(write_lines(tmp_path / "in.jsonl", *rows)).pages(
        max_rows=100, max_bytes=900
    )
    assert [[r.custom_id for r in page] for page in pages] == [["r0", "r1"], ["r2", "r3"]]


def test_a_row_larger_than_a_page_is_refused(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", {"custom_id": "a", "text": "x" * 5000})
    reader = BatchInputReader(path)
    with pytest.raises(ContractError, match=r":1: the row takes 50\d\d bytes, more than the 4096"):
        list(reader.pages(max_rows=10, max_bytes=4096))


def test_pages_come_as_the_file_is_read_not_after(tmp_path: Path) -> None:
    """A page is handed out before the lines after it are read: the file is streamed."""
    path = write_lines(
        tmp_path / "in.jsonl", *({"custom_id": f"r{i}", "text": "t"} for i in range(10)), "{bad"
    )
    reader = BatchInputReader(path)
    pages = reader.pages(max_rows=4, max_bytes=1 << 20)
    assert [r.custom_id for r in next(pages)] == ["r0", "r1", "r2", "r3"]
    assert (reader.endpoint, reader.rows) == ("/v1/embeddings", 5)  # one row read ahead
    assert len(next(pages)) == 4
    with pytest.raises(ContractError, match=r":11: JSON is malformed"):
        next(pages)


# Reading: the format, CSV, Parquet


def test_the_format_comes_from_the_suffix_or_is_given(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "rows.txt", {"custom_id": "a", "text": "x"})
    with pytest.raises(ContractError, match=r"rows.txt: cannot tell the format from the name"):
        BatchInputReader(path)
    assert read(path, format="jsonl")[0].rows == 1
    with pytest.raises(ContractError, match=r"unknown input format 'xml': jsonl, csv, parquet"):
        BatchInputReader(path, format="xml")
    with pytest.raises(ContractError, match=r"absent.jsonl: no such file"):
        BatchInputReader(tmp_path / "absent.jsonl")


def test_csv_rows_keep_commas_quotes_and_line_breaks(tmp_path: Path) -> None:
    texts = ["plain", "a, comma", 'a "quote"', "two\nlines", "ünïcödé"]
    path = tmp_path / "in.csv"
    with path.open("w", newline="", encoding="utf-8-sig") as out:  # with a byte order mark
        table = csv.writer(out)
        table.writerow(["text", "custom_id"])  # columns in either order
        table.writerows([t, f"r{i}"] for i, t in enumerate(texts))
        out.write("\r\n")  # a blank line is no row
    reader, rows = read(path, model="m")
    assert rows == [BatchRow(custom_id=f"r{i}", text=t) for i, t in enumerate(texts)]
    assert (reader.endpoint, reader.model, reader.format) == ("/v1/embeddings", "m", "csv")


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("", "the file holds no rows"),
        ("custom_id,text\r\n", "the file holds no rows"),
        ("id,text\r\na,x\r\n", ":1: a CSV batch needs the columns custom_id and text; missing: "),
        ("custom_id,text,lang\r\na,x,en\r\n", ":1: a CSV batch has the columns custom_id and"),
        ("custom_id,text,text\r\na,x,y\r\n", ":1: a CSV batch names a column twice"),
        ('custom_id,text\r\na,"two\nlines"\r\nb,x,y\r\n', ":4: 3 fields, the header has 2"),
        ('custom_id,text\r\na,"two\nlines"\r\na,x\r\n', ":4: duplicate custom_id 'a'"),
        ("custom_id,text\r\na,x\r\n,y\r\n", ":3: `custom_id` is missing or empty"),
        ('custom_id,text\r\na,x\r\nb,"open\r\nc,y\r\n', ":3: not CSV: unexpected end of data"),
    ],
)
def test_a_bad_csv_row_is_refused_naming_its_line(tmp_path: Path, content: str, named: str) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(content.encode())
    assert named in refusal(path)


def test_a_csv_line_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"custom_id,text\na,fine\nb,caf\xe9\n")
    assert f"{path}:3: not UTF-8 text (invalid continuation byte at byte 6" in refusal(path)


def test_parquet_rows_are_read_in_order(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    ids = [f"r{i}" for i in range(10_000)]
    texts = [f"text number {i}" for i in range(10_000)]
    path = tmp_path / "in.parquet"
    table = pa.table({"custom_id": ids, "text": pa.array(texts, pa.large_string())})
    pq.write_table(table, path, row_group_size=3000)
    reader, rows = read(path, model="m")
    assert [(r.custom_id, r.text) for r in rows] == list(zip(ids, texts, strict=True))
    assert (reader.rows, reader.format, reader.endpoint) == (10_000, "parquet", "/v1/embeddings")


@pytest.mark.parametrize(
    ("columns", "named"),
    [
        ({"custom_id": ["a", "b", None], "text": ["x", "y", "z"]}, ": row 3: `custom_id` is"),
        ({"custom_id": ["a", "b", "a"], "text": ["x", "y", "z"]}, ": row 3: duplicate custom_id"),
        ({"custom_id": ["a", "b", "c"], "text": ["x", "y", None]}, ": row 3: `text` is null"),
        ({"custom_id": [1, 2, 3], "text": ["x", "y", "z"]}, ": column custom_id holds int64"),
        ({"custom_id": ["a"], "text": ["x"], "lang": ["en"]}, "only, not 'lang'"),
        ({"custom_id": ["a"]}, "needs the columns custom_id and text; missing: text"),
        ({"custom_id": [], "text": []}, ": the file holds no rows"),
    ],
)
def test_a_bad_parquet_row_is_refused_naming_its_row(
    tmp_path: Path, columns: dict[str, list[object]], named: str
) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "in.parquet"
    arrays = {
        name: pa.array(values, pa.int64() if any(type(v) is int for v in values) else pa.string())
        for name, values in columns.items()
    }
    pq.write_table(pa.table(arrays), path)
    message = refusal(path, model="m")
    assert message.startswith(str(path))
    assert named in message


def test_a_file_that_is_not_parquet_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = write_lines(tmp_path / "in.parquet", {"custom_id": "a", "text": "x"})
    assert f"{path}: not a Parquet file" in refusal(path)


def test_without_pyarrow_parquet_is_refused_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = tmp_path / "in.parquet"
    path.write_bytes(b"PAR1")
    assert "install the `parquet` extra (pip install 'ai-job-fleet[parquet]')" in refusal(path)
    with pytest.raises(
        ContractError, match=r"writing Parquet needs pyarrow: install the `parquet`"
    ):
        open_result_writer("parquet", tmp_path / "o.parquet", tmp_path / "e.jsonl", batch=BATCH)
    assert not (tmp_path / "o.parquet").exists()


def test_the_sdk_reads_and_writes_batch_files_without_numpy_or_pyarrow() -> None:
    code = (
        "import sys, producer_sdk.batch.input_reader, producer_sdk.batch.result_writer;"
        "print(sorted({'numpy', 'pyarrow'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# Writing


BATCH = BatchInfo(
    id="batch_1",
    endpoint="/v1/embeddings",
    model="m",
    status="completed",
    request_counts=RequestCounts(total=3),
    created_at=1_700_000_000.5,
    expires_at=1_700_086_400.0,
    completion_window_s=86_400.0,
    pages=1,
)
CHAT_BATCH = msgspec.structs.replace(
    BATCH, id="batch_2", endpoint="/v1/chat/completions", in_progress_at=1_700_000_100.0
)
EXPIRED = RowError(code="batch_expired", message="the batch expired before this row ran")


def vector(seed: int, dimension: int = 4) -> list[float]:
    """float32 values (exact as Python floats)."""
    return array.array("f", [seed + i / 8 - 0.3 for i in range(dimension)]).tolist()


def vector_row(custom_id: str, values: list[float], **fields: Any) -> RowResult:
    block = array.array("f", values)
    if sys.byteorder == "big":
        block.byteswap()
    return RowResult(custom_id=custom_id, embedding=block.tobytes(), **fields)


def failed_row(custom_id: str, code: str, request_id: str | None = "req-9") -> RowResult:
    error = RowError(code=code, message=f"{code} happened")
    return RowResult(custom_id=custom_id, error=error, request_id=request_id)


def lines(path: Path | str) -> list[dict[str, Any]]:
    return [msgspec.json.decode(line) for line in Path(path).read_bytes().splitlines()]


def test_float32_values_reads_little_endian_float32() -> None:
    assert float32_values(b"\x00\x00\x80\x3f\x00\x00\x00\xc0") == [1.0, -2.0]


def test_jsonl_lines_have_the_openai_batch_output_shape(tmp_path: Path) -> None:
    out, errors = tmp_path / "out.jsonl", tmp_path / "out.errors.jsonl"
    usage = Usage(prompt_tokens=5, estimated=True)
    with open_result_writer("jsonl", out, errors, batch=BATCH) as writer:
        writer.write(vector_row("a", vector(1), usage=usage, request_id="req-1"), "e5")
        writer.write(failed_row("b", "context_length_exceeded"), "e5")
        writer.write_error("c", EXPIRED)
    assert writer.close() == WrittenFiles(paths=[str(out), str(errors)], succeeded=1, failed=2)
    (succeeded,) = lines(out)
    assert succeeded["id"].startswith("batch_req_")
    assert succeeded == {
        "id": succeeded["id"],
        "custom_id": "a",
        "response": {
            "status_code": 200,
            "request_id": "req-1",
            "body": {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": vector(1)}],
                "model": "e5",
                "usage": {"prompt_tokens": 5, "total_tokens": 5},
            },
        },
        "error": None,
    }
    failed, never_ran = lines(errors)
    assert failed == {
        "id": failed["id"],
        "custom_id": "b",
        "response": {
            "status_code": 400,
            "request_id": "req-9",
            "body": {
                "error": {
                    "message": "context_length_exceeded happened",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "context_length_exceeded",
                }
            },
        },
        "error": None,
    }
    assert never_ran == {
        "id": never_ran["id"],
        "custom_id": "c",
        "response": None,
        "error": {"code": "batch_expired", "message": EXPIRED.message},
    }
    assert len({succeeded["id"], failed["id"], never_ran["id"]}) == 3


def test_line_ids_are_stable_per_batch_and_row(tmp_path: Path) -> None:
    def ids(batch: BatchInfo) -> list[str]:
        with open_result_writer("jsonl", tmp_path / "o", tmp_path / "e", batch=batch) as writer:
            writer.write(vector_row("a", vector(1)), "m")
            writer.write(vector_row("b", vector(2)), "m")
        return [line["id"] for line in lines(tmp_path / "o")]

    first = ids(BATCH)
    assert ids(BATCH) == first
    assert len(set(first)) == 2
    assert set(ids(msgspec.structs.replace(BATCH, id="batch_other"))).isdisjoint(first)


@pytest.mark.parametrize(
    ("code", "status", "error_type"),
    [
        ("invalid_input", 400, "invalid_request_error"),
        ("context_length_exceeded", 400, "invalid_request_error"),
        ("auth", 401, "invalid_request_error"),
        ("budget_exhausted", 402, "insufficient_quota"),
        ("not_found", 404, "invalid_request_error"),
        ("output_invalid", 422, "invalid_request_error"),
        ("rate_limit", 429, "rate_limit_error"),
        ("internal", 500, "server_error"),
        ("unexpected_response", 500, "server_error"),
        ("provider_down", 503, "server_error"),
        ("timeout", 504, "server_error"),
        ("a_code_of_a_newer_fleet", 500, "server_error"),
    ],
)
def test_each_error_code_has_its_http_status(
    tmp_path: Path, code: str, status: int, error_type: str
) -> None:
    with open_result_writer("jsonl", tmp_path / "o", tmp_path / "e", batch=BATCH) as writer:
        writer.write(failed_row("a", code), "m")
    (line,) = lines(tmp_path / "e")
    assert line["response"]["status_code"] == status
    assert line["response"]["body"]["error"]["type"] == error_type
    assert line["response"]["body"]["error"]["code"] == code


def test_every_error_code_of_the_fleet_has_a_status() -> None:
    from contracts.errors import ErrorCode

    assert set(HTTP_STATUS) == {code.value for code in ErrorCode}


def test_a_row_the_batch_never_ran_has_no_response_however_it_comes(tmp_path: Path) -> None:
    with open_result_writer("jsonl", tmp_path / "o", tmp_path / "e", batch=BATCH) as writer:
        writer.write(failed_row("a", "batch_cancelled"), "m")
        writer.write_error("b", RowError(code="batch_failed", message="the batch failed"))
    assert [(line["response"], line["error"]["code"]) for line in lines(tmp_path / "e")] == [
        (None, "batch_cancelled"),
        (None, "batch_failed"),
    ]


def test_a_chat_row_answered_by_a_substitute_names_it(tmp_path: Path) -> None:
    with open_result_writer("jsonl", tmp_path / "o", tmp_path / "e", batch=CHAT_BATCH) as writer:
        answer = Completion(text="Hi", model="gpt-4o-mini")  # the fallback chain's substitute
        writer.write(RowResult(custom_id="a", completion=answer), "smollm2")
    (line,) = lines(tmp_path / "o")
    assert line["response"]["body"]["model"] == "gpt-4o-mini"


def test_chat_rows_are_chat_completion_objects(tmp_path: Path) -> None:
    calls = [
        {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        {"id": "call_2", "name": "get_time", "arguments": "{}"},
    ]
    usage = Usage(prompt_tokens=20, completion_tokens=9, cached_tokens=16, reasoning_tokens=4)
    with open_result_writer("jsonl", tmp_path / "o", tmp_path / "e", batch=CHAT_BATCH) as writer:
        answer = Completion(text="Hello!", finish_reason="length")
        writer.write(RowResult(custom_id="a", completion=answer, usage=usage), "smollm2")
        asked = Completion(text="", finish_reason="tool_calls", tool_calls=calls)
        writer.write(RowResult(custom_id="b", completion=asked, request_id="req-b"), "smollm2")
    text, tools = (line["response"]["body"] for line in lines(tmp_path / "o"))
    assert text["id"].startswith("chatcmpl-")
    assert text == {
        "id": text["id"],
        "object": "chat.completion",
        "created": 1_700_000_100,
        "model": "smollm2",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!", "refusal": None},
                "logprobs": None,
                "finish_reason": "length",
            }
        ],
        "usage": {
            "prompt_tokens": 20,
            "completion_tokens": 9,
            "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 16},
            "completion_tokens_details": {"reasoning_tokens": 4},
        },
    }
    assert tools["choices"][0]["finish_reason"] == "tool_calls"
    assert tools["model"] == "smollm2"
    assert tools["choices"][0]["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_time", "arguments": "{}"},
            },
        ],
    }
    assert tools["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def test_npy_holds_the_vectors_and_the_ids_file_their_custom_ids(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    out, errors = tmp_path / "v.npy", tmp_path / "v.errors.jsonl"
    with open_result_writer("npy", out, errors, batch=BATCH) as writer:
        for i in range(300):
            if i % 7 == 3:
                writer.write(failed_row(f"r{i}", "timeout"), "m")
            else:
                writer.write(vector_row(f"r{i}", vector(i, 384)), "m")
        writer.write_error("never", EXPIRED)
    written = writer.written
    ids_path = tmp_path / "v.npy.ids.jsonl"
    assert written.paths == [str(out), str(ids_path), str(errors)]
    kept = [i for i in range(300) if i % 7 != 3]
    assert (written.succeeded, written.failed) == (len(kept), 300 - len(kept) + 1)
    matrix = np.load(out)
    assert matrix.dtype == np.dtype("<f4")
    assert matrix.shape == (len(kept), 384)
    assert matrix.tolist() == [vector(i, 384) for i in kept]
    assert [msgspec.json.decode(line) for line in ids_path.read_bytes().splitlines()] == [
        f"r{i}" for i in kept
    ]
    assert [line["custom_id"] for line in lines(errors)] == [
        *(f"r{i}" for i in range(300) if i % 7 == 3),
        "never",
    ]


def test_an_npy_without_rows_is_an_empty_matrix_of_the_batch_dimension(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    batch = msgspec.structs.replace(BATCH, dimensions=64)
    with open_result_writer("npy", tmp_path / "v.npy", tmp_path / "e", batch=batch) as writer:
        writer.write_error("a", EXPIRED)
    assert np.load(tmp_path / "v.npy").shape == (0, 64)


def test_vectors_of_another_length_are_refused(tmp_path: Path) -> None:
    for format in ("npy", "parquet", "corpus"):
        if format == "parquet":
            pytest.importorskip("pyarrow")
        output = tmp_path / f"v.{format}"
        with open_result_writer(format, output, tmp_path / "e", batch=BATCH) as writer:
            writer.write(vector_row("a", vector(1, 8)), "m")
            with pytest.raises(ContractError, match=r"row 'b' has 4 numbers, the batch's .* 8"):
                writer.write(vector_row("b", vector(2, 4)), "m")
            with pytest.raises(ContractError, match=r"row 'c' has no vector"):
                writer.write(RowResult(custom_id="c"), "m")
        assert writer.written.succeeded == 1
    sized = open_result_writer("npy", tmp_path / "d.npy", tmp_path / "e", batch=BATCH, dimension=3)
    with sized, pytest.raises(ContractError, match=r"row 'a' has 4 numbers, the batch's vectors 3"):
        sized.write(vector_row("a", vector(1)), "m")


def test_parquet_holds_custom_ids_and_fixed_size_float32_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    monkeypatch.setattr(batch_output, "_PARQUET_ROW_GROUP", 100)  # several row groups
    out, errors = tmp_path / "v.parquet", tmp_path / "v.errors.jsonl"
    with open_result_writer("parquet", out, errors, batch=BATCH) as writer:
        for i in range(250):
            writer.write(vector_row(f"r{i}", vector(i, 16)), "m")
        writer.write(failed_row("bad", "invalid_input"), "m")
    assert writer.written == WrittenFiles(paths=[str(out), str(errors)], succeeded=250, failed=1)
    parquet = pq.ParquetFile(out)
    assert parquet.metadata.num_row_groups == 3
    table = parquet.read()
    assert table.schema == pa.schema(
        [("custom_id", pa.string()), ("embedding", pa.list_(pa.float32(), 16))]
    )
    assert table.column("custom_id").to_pylist() == [f"r{i}" for i in range(250)]
    assert table.column("embedding").to_pylist() == [vector(i, 16) for i in range(250)]
    assert [line["custom_id"] for line in lines(errors)] == ["bad"]


def test_a_parquet_without_rows_is_still_a_parquet_file(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    batch = msgspec.structs.replace(BATCH, dimensions=8)
    with open_result_writer("parquet", tmp_path / "v.parquet", tmp_path / "e", batch=batch):
        pass
    table = pq.read_table(tmp_path / "v.parquet")
    assert table.num_rows == 0
    assert table.schema.field("embedding").type.list_size == 8


class CorpusError(msgspec.Struct, frozen=True):
    code: str
    message: str


class CorpusResult(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The line `fleet embed-corpus` has always written (its ResultRow)."""

    custom_id: str
    embedding: list[float] | None = None
    error: CorpusError | None = None


def test_corpus_is_one_file_of_vectors_and_errors(tmp_path: Path) -> None:
    out = tmp_path / "corpus.jsonl"
    with open_result_writer("corpus", out, tmp_path / "unused", batch=BATCH) as writer:
        writer.write(vector_row("a", vector(1)), "m")
        writer.write(failed_row("b", "invalid_input"), "m")
        writer.write_error("c", EXPIRED)
    assert writer.written == WrittenFiles(paths=[str(out)], succeeded=1, failed=2)
    assert not (tmp_path / "unused").exists()
    decoded = [
        msgspec.json.decode(line, type=CorpusResult) for line in out.read_bytes().splitlines()
    ]
    assert decoded == [
        CorpusResult(custom_id="a", embedding=vector(1)),
        CorpusResult(custom_id="b", error=CorpusError("invalid_input", "invalid_input happened")),
        CorpusResult(custom_id="c", error=CorpusError("batch_expired", EXPIRED.message)),
    ]
    assert b'"embedding":null' not in out.read_bytes()


@pytest.mark.parametrize("format", ["npy", "parquet", "corpus"])
def test_vector_formats_are_for_embedding_batches(tmp_path: Path, format: Any) -> None:
    with pytest.raises(ContractError, match=r"holds vectors: it is for embedding batches"):
        open_result_writer(format, tmp_path / "o", tmp_path / "e", batch=CHAT_BATCH)


def test_an_unknown_format_and_one_file_for_both_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"unknown results format 'csv': jsonl, npy"):
        open_result_writer("csv", tmp_path / "o", tmp_path / "e", batch=BATCH)  # type: ignore[arg-type]
    with pytest.raises(ContractError, match=r"the output and the error file must be two files"):
        open_result_writer("jsonl", tmp_path / "o", tmp_path / "." / "o", batch=BATCH)


def test_writers_make_the_output_folder_and_close_once(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "er" / "out.jsonl"
    writer = open_result_writer("jsonl", out, tmp_path / "elsewhere" / "e.jsonl", batch=BATCH)
    writer.write(vector_row("a", vector(1)), "m")
    assert writer.written.succeeded == 1
    first = writer.close()
    assert writer.close() is first
    assert [line["custom_id"] for line in lines(out)] == ["a"]


def test_fifty_thousand_vectors_of_384_are_written_whole(tmp_path: Path) -> None:
    """A batch's worth, as the OpenAI lines (about 2 s here): not a timing test, nothing
    asserts a time."""
    made = [vector_row("", vector(seed, 384)) for seed in range(97)]
    with open_result_writer("jsonl", tmp_path / "o", tmp_path / "e", batch=BATCH) as writer:
        for i in range(50_000):
            writer.write(msgspec.structs.replace(made[i % 97], custom_id=f"r{i}"), "m")
    assert writer.written.succeeded == 50_000
    with (tmp_path / "o").open("rb") as written:
        ends = collections.deque(enumerate(written, start=1), maxlen=1)
    ((count, last_line),) = ends
    assert count == 50_000
    last = msgspec.json.decode(last_line)
    assert last["custom_id"] == "r49999"
    assert last["response"]["body"]["data"][0]["embedding"] == vector(49_999 % 97, 384)


# Round trips: a file read, its rows answered, the results written and read back


def answered(rows: Iterator[BatchRow], endpoint: Endpoint | None) -> Iterator[RowResult]:
    """Made-up answers: row i's vector is vector(i); every fifth row fails."""
    for i, row in enumerate(rows):
        if i % 5 == 4:
            yield failed_row(row.custom_id, "rate_limit")
        elif endpoint == "/v1/chat/completions":
            assert row.chat is not None
            yield RowResult(custom_id=row.custom_id, completion=Completion(text=f"answer {i}"))
        else:
            yield vector_row(row.custom_id, vector(i, 8), usage=Usage(prompt_tokens=i))


@pytest.mark.parametrize("input_format", ["jsonl", "csv", "parquet"])
def test_every_custom_id_comes_back_once_with_its_vector(tmp_path: Path, input_format: str) -> None:
    custom_ids = [f"doc-{i:04d}" for i in range(1000)]
    texts = [f"text of {c}, with a comma" for c in custom_ids]
    path = tmp_path / f"in.{input_format}"
    if input_format == "jsonl":
        write_lines(path, *(embed_line(c, t) for c, t in zip(custom_ids, texts, strict=True)))
    elif input_format == "csv":
        with path.open("w", newline="") as table:
            csv.writer(table).writerows(
                [("custom_id", "text"), *zip(custom_ids, texts, strict=True)]
            )
    else:
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        pq.write_table(pa.table({"custom_id": custom_ids, "text": texts}), path)
    reader = BatchInputReader(path, model="m")
    rows = (row for page in reader.pages(max_rows=64, max_bytes=16_384) for row in page)
    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    with open_result_writer("jsonl", out, errors, batch=BATCH) as writer:
        for result in answered(rows, "/v1/embeddings"):
            writer.write(result, reader.model or "")
    assert reader.rows == 1000
    vectors = {
        line["custom_id"]: line["response"]["body"]["data"][0]["embedding"] for line in lines(out)
    }
    failed = [line["custom_id"] for line in lines(errors)]
    assert sorted([*vectors, *failed]) == custom_ids
    assert failed == [c for i, c in enumerate(custom_ids) if i % 5 == 4]
    assert vectors == {c: vector(i, 8) for i, c in enumerate(custom_ids) if i % 5 != 4}
    assert writer.written.succeeded == 800


def test_a_chat_file_comes_back_as_chat_completions(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "chat.jsonl", *(chat_line(f"q{i}") for i in range(10)))
    reader = BatchInputReader(path)
    rows = (row for page in reader.pages(max_rows=4, max_bytes=1 << 20) for row in page)
    with open_result_writer("jsonl", tmp_path / "o", tmp_path / "e", batch=CHAT_BATCH) as writer:
        for result in answered(rows, "/v1/chat/completions"):
            writer.write(result, reader.model or "")
    assert reader.endpoint == "/v1/chat/completions"
    answers = {
        line["custom_id"]: line["response"]["body"]["choices"][0]["message"]["content"]
        for line in lines(tmp_path / "o")
    }
    assert answers == {f"q{i}": f"answer {i}" for i in range(10) if i % 5 != 4}
    assert [line["custom_id"] for line in lines(tmp_path / "e")] == ["q4", "q9"]
