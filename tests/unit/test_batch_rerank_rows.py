"""Rerank rows in batch files: `/v1/rerank` lines read into rows with Cohere's and Jina's
body fields (what the fleet does not honour refused, named), and their answers written in
the same shape the gateway answers with."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import msgspec

from contracts.batch import RowResult
from contracts.replies import RankedDocument
from contracts.rerank import RerankOptions
from contracts.usage import Usage
from gateway import rerank as gateway_rerank
from producer_sdk import FleetClient
from producer_sdk.batch.result_writer import open_result_writer
from tests.unit.test_batch_files import BATCH, lines, read, refusal, write_lines
from workers.batch import requests
from workers.batch.requests import chunks_of
from workers.settings import BatchSettings

RERANK_BATCH = msgspec.structs.replace(BATCH, id="batch_3", endpoint="/v1/rerank")


def rerank_line(custom_id: str, **body: Any) -> dict[str, Any]:
    body = {"model": "bge-reranker", "query": "q", "documents": ["a", "b"], **body}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/rerank", "body": body}


def test_rerank_rows_carry_every_field_of_the_body(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "in.jsonl",
        rerank_line("plain", top_n=1, max_tokens_per_doc=64),
        rerank_line(
            "objects",
            documents=[{"title": "T", "body": "B"}],
            rank_fields=["title", "body"],
            return_documents=True,
        ),
    )
    reader, rows = read(path)
    assert (reader.endpoint, reader.model) == ("/v1/rerank", "bge-reranker")
    assert [row.rerank for row in rows] == [
        RerankOptions(query="q", documents=["a", "b"], top_n=1, max_tokens_per_doc=64),
        RerankOptions(
            query="q",
            documents=[{"title": "T", "body": "B"}],
            rank_fields=["title", "body"],
            return_documents=True,
        ),
    ]
    # One request a row: each row is a query of its own.
    assert [len(c.rows) for c in chunks_of(0, rows, "/v1/rerank", BatchSettings())] == [1, 1]


def test_what_a_rerank_row_may_not_hold_is_refused_naming_it(tmp_path: Path) -> None:
    unknown = write_lines(tmp_path / "a.jsonl", rerank_line("a", return_text=True))
    assert "a.jsonl:1" in refusal(unknown)
    assert "return_text" in refusal(unknown)
    missing = write_lines(tmp_path / "b.jsonl", rerank_line("b", documents=[{"title": "x"}]))
    assert "no field 'text' to rank" in refusal(missing)
    empty = write_lines(tmp_path / "c.jsonl", rerank_line("c", documents=[]))
    assert "length >= 1" in refusal(empty)
    mixed = write_lines(
        tmp_path / "d.jsonl",
        rerank_line("d"),
        {"custom_id": "e", "text": "an embedding row"},
    )
    assert "one batch, one endpoint" in refusal(mixed)


def test_rerank_answers_are_written_in_the_gateways_shape(tmp_path: Path) -> None:
    ranking = [
        RankedDocument(index=1, relevance_score=0.9, document="b"),
        RankedDocument(index=0, relevance_score=0.2, document={"text": "a", "id": "7"}),
    ]
    with open_result_writer("jsonl", tmp_path / "o", tmp_path / "e", batch=RERANK_BATCH) as out:
        row = RowResult(
            custom_id="r", ranking=ranking, usage=Usage(prompt_tokens=12), request_id="req-r"
        )
        out.write(row, "bge-reranker")
    (line,) = lines(tmp_path / "o")
    assert line["custom_id"] == "r"
    assert line["response"]["status_code"] == 200
    assert line["response"]["body"] == {
        "id": line["id"],
        "model": "bge-reranker",
        "results": [
            {"index": 1, "relevance_score": 0.9, "document": {"text": "b"}},
            {"index": 0, "relevance_score": 0.2, "document": {"text": "a", "id": "7"}},
        ],
        "usage": {"total_tokens": 12},
    }


def test_every_rerank_option_is_passed_on_by_the_coordinator_and_the_gateway() -> None:
    """Accepted means honoured: each option reaches FleetClient.rerank by name."""
    takes = inspect.signature(FleetClient.rerank).parameters
    coordinator = inspect.getsource(requests.ChunkRunner._rerank)
    gateway = inspect.getsource(gateway_rerank._rerank)
    for field in RerankOptions.__struct_fields__:
        assert field in takes, field
        assert f"body.{field}" in coordinator, f"the coordinator drops {field}"
        assert f"call.{field}" in gateway, f"the gateway drops {field}"
