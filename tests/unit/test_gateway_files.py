"""The pure parts of the gateway's files and batches: the multipart reader, fed bodies as
httpx (the `openai` package's transport) encodes them, and which result files a batch has."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from contracts.batch import BatchInfo, RequestCounts
from gateway.batch_objects import batch_object, completion_window
from gateway.errors import OpenAIError
from gateway.form_data import read_form
from gateway.result_files import result_file_ids


def encoded(**parts: object) -> tuple[str, bytes]:
    """A multipart body as httpx sends it: its Content-Type and its bytes."""
    files = {k: v for k, v in parts.items() if isinstance(v, tuple)}
    data = {k: v for k, v in parts.items() if not isinstance(v, tuple)}
    request = httpx.Request("POST", "http://gw/v1/files", files=files, data=data)
    return request.headers["content-type"], request.read()


def test_a_form_gives_its_fields_and_its_file_byte_for_byte() -> None:
    # CRLFs, a boundary-like line and bytes that are not UTF-8, inside the file.
    content = b'{"a": 1}\r\n--not-the-boundary\r\n\xff\x00\n'
    content_type, body = encoded(purpose="batch", file=("rows.jsonl", content))
    form = read_form(content_type, body)
    assert form.fields == {"purpose": "batch"}
    assert form.files["file"].filename == "rows.jsonl"
    assert form.files["file"].data == content


FORM = "multipart/form-data; boundary=b"
NAMED = b'--b\r\nContent-Disposition: form-data; name="x"'


@pytest.mark.parametrize(
    ("content_type", "body", "says"),
    [
        ("application/json", b"{}", "must be multipart/form-data"),
        ("multipart/form-data", b"", "names no boundary"),
        (FORM, NAMED, "no header block"),
        (FORM, NAMED + b"\r\n\r\n1", "closing boundary"),
        (FORM, b"--b\r\nContent-Type: text/plain\r\n\r\n1\r\n--b--", "form-data"),
    ],
)
def test_a_body_that_is_not_a_form_is_400_saying_why(
    content_type: str, body: bytes, says: str
) -> None:
    with pytest.raises(OpenAIError) as refused:
        read_form(content_type, body)
    assert refused.value.status == 400
    assert says in refused.value.message


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
