"""The pure part of the gateway's batches: which result files a batch has, and its OpenAI
shape."""

from __future__ import annotations

import msgspec

from contracts.batch import BatchInfo, RequestCounts
from gateway.batch_objects import batch_object, completion_window
from gateway.result_files import result_file_ids


def _batch(status: str, completed: int, total: int = 4) -> BatchInfo:
    counts = RequestCounts(total=total, completed=completed, failed=total - completed)
    return BatchInfo(
        id="batch_1", endpoint="/v1/chat/completions", model="m", status=status,  # type: ignore[arg-type]
        request_counts=counts, created_at=1.0, expires_at=86401.0, completion_window_s=86400.0,
        pages=1, input_file="file-1",
    )  # fmt: skip


def test_an_ended_batch_has_the_result_files_its_rows_fill() -> None:
    assert result_file_ids(_batch("in_progress", 2)) == {}
    assert result_file_ids(_batch("completed", 4)) == {"output": "file-output-batch_1"}
    assert result_file_ids(_batch("cancelled", 0)) == {"errors": "file-errors-batch_1"}
    both = batch_object(_batch("completed", 3))
    assert (both.output_file_id, both.error_file_id) == (
        "file-output-batch_1",
        "file-errors-batch_1",
    )
    shape = msgspec.json.decode(msgspec.json.encode(both))
    assert shape["object"] == "batch"
    assert shape["input_file_id"] == "file-1"
    assert shape["completion_window"] == "24h"
    assert shape["request_counts"] == {"total": 4, "completed": 3, "failed": 1}


def test_a_window_is_spelled_in_hours_where_it_is_whole_hours() -> None:
    assert completion_window(86400.0) == "24h"
    assert completion_window(90.0) == "90s"
