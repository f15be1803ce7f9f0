"""The pure parts of batch jobs: which outcome of a row counts, how pages become requests,
and that every field of a chat row reaches the generate request."""

from __future__ import annotations

import inspect

import pytest

from contracts.batch import (
    BatchInfo,
    BatchResults,
    BatchRow,
    ChatBody,
    RequestCounts,
    RowError,
    RowResult,
)
from contracts.batch_tally import ResultTally
from producer_sdk.options import GenerateOptions
from workers.batch import requests
from workers.batch.requests import Chunk, chunks_of, request_id_of
from workers.settings import BatchSettings

OK = RowResult(custom_id="a", embedding=b"\0" * 8)
RETRYABLE = RowError(code="rate_limit", message="slow down", retryable=True)
FOR_GOOD = RowError(code="invalid_input", message="no")


def results(round_: int, *rows: RowResult) -> BatchResults:
    return BatchResults(batch_id="b", round=round_, page=0, model="m", dimension=2, rows=list(rows))


def failed(custom_id: str, error: RowError) -> RowResult:
    return RowResult(custom_id=custom_id, error=error)


def test_the_first_outcome_of_a_round_wins_and_a_later_round_replaces_it() -> None:
    tally = ResultTally()
    first = results(0, OK, failed("b", RETRYABLE))
    again = results(0, failed("a", FOR_GOOD))  # written twice by a coordinator that resumed
    retried = results(1, RowResult(custom_id="b", embedding=b"\0" * 8))
    for offset, record in enumerate([first, again, retried]):
        tally.add(offset, record)
    assert [r.custom_id for r in tally.wins(0, first)] == ["a"]
    assert list(tally.wins(1, again)) == []
    assert [r.custom_id for r in tally.wins(2, retried)] == ["b"]
    assert tally.counts(3) == RequestCounts(total=3, completed=2, failed=0)


def test_settled_and_eligible_rows_of_a_retry_round() -> None:
    tally = ResultTally()
    tally.add(0, results(0, OK, failed("b", RETRYABLE), failed("c", FOR_GOOD)))
    # Round 0 is over for all three; round 1 runs b (retryable) and d (never ran), only.
    assert all(tally.settled(i, 0) for i in "abc")
    assert [i for i in "abcd" if tally.eligible(i, 1)] == ["b", "d"]
    assert [i for i in "abcd" if not tally.settled(i, 1)] == ["b", "d"]
    assert tally.retryable() == 1
    tally.add(1, results(1, failed("b", RETRYABLE)))
    assert tally.settled("b", 1)
    assert tally.eligible("b", 1)  # the same set after a resume


def _rows(*texts: str) -> list[BatchRow]:
    return [BatchRow(custom_id=f"r{i}", text=t) for i, t in enumerate(texts)]


def test_pages_become_right_sized_embed_requests_and_one_request_per_chat_row() -> None:
    limits = BatchSettings(embed_chunk_rows=3, embed_chunk_chars=10)
    chunks = chunks_of(
        4, _rows("aaaa", "bbbb", "cc", "d", "e", "f", "ggggggggggg"), "/v1/embeddings", limits
    )
    assert [[r.text for r in c.rows] for c in chunks] == [
        ["aaaa", "bbbb", "cc"], ["d", "e", "f"], ["ggggggggggg"],
    ]  # fmt: skip
    assert [(c.page, c.index) for c in chunks] == [(4, 0), (4, 1), (4, 2)]
    chat = [BatchRow(custom_id=f"q{i}", chat=ChatBody(messages=[])) for i in range(3)]
    assert [len(c.rows) for c in chunks_of(0, chat, "/v1/chat/completions", limits)] == [1, 1, 1]


def test_request_ids_name_batch_round_page_and_chunk() -> None:
    info = BatchInfo(
        id="batch_x", endpoint="/v1/embeddings", model="m", status="in_progress",
        request_counts=RequestCounts(total=1), created_at=0, expires_at=1,
        completion_window_s=1, pages=1, round=2,
    )  # fmt: skip
    assert request_id_of(info, Chunk(page=3, index=1, rows=[])) == "batch_x-r2-p3-c1"


def test_every_chat_body_field_is_passed_to_generate() -> None:
    """Accepted means honoured: each ChatBody field is an option of FleetClient.generate
    and the coordinator passes it by name."""
    source = inspect.getsource(requests.ChunkRunner._complete)
    for field in ChatBody.__struct_fields__:
        if field == "messages":
            continue
        assert field in GenerateOptions.__annotations__, field
        assert f"{field}=body.{field}" in source, f"{field} is not passed on"


@pytest.mark.parametrize("bad", [{"n": 2}, {"stream": True}, {"logprobs": True}])
def test_a_chat_body_refuses_fields_the_fleet_does_not_honour(bad: dict[str, object]) -> None:
    import msgspec

    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"messages": [{"role": "user", "content": "hi"}], **bad}, ChatBody)
