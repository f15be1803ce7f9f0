"""Batch input files read into rows, and results written in OpenAI's batch output shape
and the compact formats, read back and compared."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from contracts.batch import BatchInfo, Completion, RequestCounts, RowError, RowResult
from contracts.errors import ContractError
from contracts.usage import Usage
from producer_sdk.batch_input import BatchInputReader
from producer_sdk.batch_output import floats, open_result_writer

MODEL = "all-minilm-l6-v2"


def _write(path: Path, lines: list[object]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _all_rows(reader: BatchInputReader, **limits: int) -> list[list[str]]:
    return [
        [r.custom_id for r in page]
        for page in reader.pages(**{"max_rows": 2, "max_bytes": 10**6, **limits})
    ]


def _embed_line(custom_id: str, text: object, **body: object) -> dict[str, object]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings",
            "body": {"model": MODEL, "input": text, **body}}  # fmt: skip


def test_openai_shaped_embedding_rows_are_read_in_pages(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", [_embed_line(f"r{i}", f"text {i}") for i in range(5)])
    reader = BatchInputReader(path)
    assert _all_rows(reader) == [["r0", "r1"], ["r2", "r3"], ["r4"]]
    assert (reader.endpoint, reader.model, reader.rows) == ("/v1/embeddings", MODEL, 5)


def test_pages_are_bounded_by_bytes_too(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "in.jsonl", [{"custom_id": f"r{i}", "text": "x" * 400} for i in range(4)]
    )
    assert _all_rows(BatchInputReader(path), max_rows=100, max_bytes=900) == [
        ["r0", "r1"],
        ["r2", "r3"],
    ]


def test_chat_rows_keep_their_body(tmp_path: Path) -> None:
    line = {"custom_id": "q", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "m", "max_tokens": 5, "seed": 3,
                     "messages": [{"role": "user", "content": "hi"}]}}  # fmt: skip
    reader = BatchInputReader(_write(tmp_path / "in.jsonl", [line]))
    ((row,),) = list(reader.pages(max_rows=10, max_bytes=10**6))
    assert row.chat is not None
    assert (row.chat.max_tokens, row.chat.seed, row.chat.messages[0].content) == (5, 3, "hi")
    assert (reader.endpoint, reader.model) == ("/v1/chat/completions", "m")


def test_csv_rows(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('custom_id,text\na,"one, two"\nb,three\n')
    reader = BatchInputReader(path, model=MODEL)
    (page,) = list(reader.pages(max_rows=10, max_bytes=10**6))
    assert [(r.custom_id, r.text) for r in page] == [("a", "one, two"), ("b", "three")]


def test_parquet_rows(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"custom_id": ["a", "b"], "text": ["x", "y"]}), str(path))
    (page,) = list(BatchInputReader(path, model=MODEL).pages(max_rows=10, max_bytes=10**6))
    assert [(r.custom_id, r.text) for r in page] == [("a", "x"), ("b", "y")]


_SHORT = {"custom_id": "a", "text": "x"}
_CHAT = {"custom_id": "c", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "m", "messages": [{"role": "user", "content": "x"}]}}  # fmt: skip
BAD_FILES = [
    ([_SHORT, {"custom_id": "a", "text": "y"}], r":2: duplicate custom_id 'a'"),
    ([{"custom_id": "", "text": "x"}], r":1: `custom_id` is missing or empty"),
    ([{"custom_id": "a"}], r":1: a row is \{custom_id, text\}"),
    ([_embed_line("a", ["x", "y"])], r":1: `input` holds 2 texts"),
    ([_embed_line("a", "x", user="u")], r":1: body field 'user' is not supported"),
    ([_embed_line("a", "x"), _embed_line("b", "y", model="o")], r":2: .*one batch, one model"),
    ([_embed_line("a", "x", dimensions=8), _embed_line("b", "y", dimensions=16)], r":2: .* 16"),
    ([{**_CHAT, "url": "/v1/completions"}], r":1: `url` '/v1/completions'"),
    ([{**_CHAT, "body": {**_CHAT["body"], "n": 2}}], r":1: body: .*`n`"),  # type: ignore[dict-item]
    ([_SHORT, _embed_line("b", "y"), _CHAT], r":3: .*one batch, one endpoint"),
]


@pytest.mark.parametrize(("lines", "message"), BAD_FILES)
def test_a_bad_row_is_named_by_its_line(tmp_path: Path, lines: list[object], message: str) -> None:
    path = _write(tmp_path / "in.jsonl", lines)
    with pytest.raises(ContractError, match=message):
        list(BatchInputReader(path).pages(max_rows=10, max_bytes=10**6))


def test_an_empty_file_and_a_model_that_disagrees_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ContractError, match="holds no rows"):
        list(BatchInputReader(empty).pages(max_rows=10, max_bytes=10**6))
    path = _write(tmp_path / "in.jsonl", [_embed_line("a", "x")])
    with pytest.raises(ContractError, match="one batch, one model"):
        list(BatchInputReader(path, model="another").pages(max_rows=10, max_bytes=10**6))


def _info(endpoint: str = "/v1/embeddings") -> BatchInfo:
    return BatchInfo(
        id="batch_t", endpoint=endpoint, model=MODEL, status="completed",  # type: ignore[arg-type]
        request_counts=RequestCounts(total=3), created_at=1_700_000_000.0,
        expires_at=1_700_086_400.0, completion_window_s=86_400, pages=1,
    )  # fmt: skip


VECTORS = np.arange(12, dtype="<f4").reshape(3, 4) / 10
ROWS = [RowResult(custom_id=f"r{i}", embedding=VECTORS[i].tobytes(), request_id="req",
                  usage=Usage(prompt_tokens=2, estimated=True)) for i in range(3)]  # fmt: skip
FAILED = RowResult(
    custom_id="bad", error=RowError(code="rate_limit", message="slow", retryable=True)
)
NEVER = RowError(code="batch_cancelled", message="the batch cancelled before this row ran")


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_results_in_openai_batch_output_shape(tmp_path: Path) -> None:
    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    with open_result_writer("jsonl", out, errors, batch=_info()) as writer:
        for row in [*ROWS, FAILED]:
            writer.write(row, MODEL)
        writer.write_error("never", NEVER)
    assert (writer.written.succeeded, writer.written.failed) == (2 + 1, 2)
    first = _lines(out)[0]
    assert first["custom_id"] == "r0"
    assert str(first["id"]).startswith("batch_req_")
    assert first["error"] is None
    response = first["response"]
    assert isinstance(response, dict)
    assert (response["status_code"], response["request_id"]) == (200, "req")
    body = response["body"]
    assert body["object"] == "list"
    assert body["data"][0]["object"] == "embedding"
    assert np.allclose(body["data"][0]["embedding"], VECTORS[0])
    assert body["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    failed, never = _lines(errors)
    assert failed["response"]["status_code"] == 429  # type: ignore[index]
    assert failed["response"]["body"]["error"]["code"] == "rate_limit"  # type: ignore[index]
    assert never == {"id": never["id"], "custom_id": "never", "response": None,
                     "error": {"code": "batch_cancelled", "message": NEVER.message}}  # fmt: skip


def test_chat_results_are_chat_completion_objects(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    row = RowResult(
        custom_id="q", request_id="req",
        completion=Completion(text="Hello", finish_reason="tool_calls",
                              tool_calls=[{"id": "c1", "name": "f", "arguments": "{}"}]),
        usage=Usage(prompt_tokens=3, completion_tokens=2),
    )  # fmt: skip
    with open_result_writer(
        "jsonl", out, tmp_path / "e.jsonl", batch=_info("/v1/chat/completions")
    ) as w:
        w.write(row, "m")
    (line,) = _lines(out)
    body = line["response"]["body"]  # type: ignore[index]
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"]["content"] == "Hello"
    assert choice["message"]["tool_calls"] == [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]
    assert choice["finish_reason"] == "tool_calls"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_npy_results_load_with_numpy_beside_their_ids(tmp_path: Path) -> None:
    out, errors = tmp_path / "out.npy", tmp_path / "errors.jsonl"
    with open_result_writer("npy", out, errors, batch=_info()) as writer:
        for row in [ROWS[0], FAILED, ROWS[1], ROWS[2]]:
            writer.write(row, MODEL)
    assert np.array_equal(np.load(out), VECTORS)
    ids = [json.loads(line) for line in (tmp_path / "out.npy.ids.jsonl").read_text().splitlines()]
    assert ids == ["r0", "r1", "r2"]
    assert [line["custom_id"] for line in _lines(errors)] == ["bad"]


def test_parquet_results(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "out.parquet"
    with open_result_writer("parquet", out, tmp_path / "e.jsonl", batch=_info()) as writer:
        for row in ROWS:
            writer.write(row, MODEL)
    table = pq.read_table(str(out)).to_pydict()
    assert table["custom_id"] == ["r0", "r1", "r2"]
    assert np.allclose(np.array(table["embedding"]), VECTORS)


def test_corpus_results_are_one_file(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with open_result_writer("corpus", out, tmp_path / "unused.jsonl", batch=_info()) as writer:
        writer.write(ROWS[0], MODEL)
        writer.write(FAILED, MODEL)
    good, bad = _lines(out)
    assert good["custom_id"] == "r0"
    assert np.allclose(good["embedding"], VECTORS[0])  # type: ignore[arg-type]
    assert bad == {"custom_id": "bad", "error": {"code": "rate_limit", "message": "slow"}}
    assert not (tmp_path / "unused.jsonl").exists()


def test_vectors_only_formats_refuse_chat_batches(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="for embedding batches"):
        open_result_writer(
            "npy", tmp_path / "o", tmp_path / "e", batch=_info("/v1/chat/completions")
        )


def test_floats_reads_little_endian_float32() -> None:
    assert floats(np.array([1.5, -2.0], dtype="<f4").tobytes()) == [1.5, -2.0]


def test_fifty_thousand_vectors_are_written_in_seconds(tmp_path: Path) -> None:
    """Not a timing test (nothing asserts a time): it writes a batch's worth and checks it."""
    block = np.random.default_rng(1).random(384, dtype=np.float32).astype("<f4").tobytes()
    rows = [RowResult(custom_id=f"r{i}", embedding=block) for i in range(50_000)]
    started = time.perf_counter()
    with open_result_writer(
        "jsonl", tmp_path / "o.jsonl", tmp_path / "e.jsonl", batch=_info()
    ) as w:
        for row in rows:
            w.write(row, MODEL)
    print(f"50,000 rows of 384 floats as JSONL: {time.perf_counter() - started:.1f} s")
    assert w.written.succeeded == 50_000
    with (tmp_path / "o.jsonl").open() as lines:
        assert sum(1 for _ in lines) == 50_000
