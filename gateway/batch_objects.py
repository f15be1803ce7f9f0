"""A fleet batch's status (``BatchInfo``) as OpenAI's ``batch`` object (a page of them is a
``ListPage``, gateway/list_pages.py)."""

from __future__ import annotations

import msgspec

from contracts.batch import BatchInfo
from gateway.result_files import result_file_ids


class _RequestCounts(msgspec.Struct, frozen=True, kw_only=True):
    total: int
    completed: int
    failed: int


class _BatchError(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str
    param: None = None
    line: None = None


class _BatchErrors(msgspec.Struct, frozen=True, kw_only=True):
    object: str = "list"
    data: list[_BatchError]


class BatchObject(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    object: str = "batch"
    endpoint: str
    errors: _BatchErrors | None
    input_file_id: str
    completion_window: str
    status: str
    output_file_id: str | None
    error_file_id: str | None
    created_at: int
    in_progress_at: int | None
    expires_at: int
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: _RequestCounts
    metadata: dict[str, str]


def batch_object(info: BatchInfo) -> BatchObject:
    files = result_file_ids(info)
    counts = info.request_counts
    errors = None
    if info.errors:  # why the batch failed, in words
        data = [_BatchError(code="batch_failed", message=message) for message in info.errors]
        errors = _BatchErrors(data=data)
    return BatchObject(
        id=info.id,
        endpoint=info.endpoint,
        errors=errors,
        # The gateway names a batch's input file by its file id (gateway/batches.py); a
        # batch submitted with the SDK or `fleet batch submit` shows its file's name.
        input_file_id=info.input_file or "",
        completion_window=completion_window(info.completion_window_s),
        status=info.status,
        output_file_id=files.get("output"),
        error_file_id=files.get("errors"),
        created_at=int(info.created_at),
        in_progress_at=_seconds(info.in_progress_at),
        expires_at=int(info.expires_at),
        finalizing_at=_seconds(info.finalizing_at),
        completed_at=_seconds(info.completed_at),
        failed_at=_seconds(info.failed_at),
        expired_at=_seconds(info.expired_at),
        cancelling_at=_seconds(info.cancelling_at),
        cancelled_at=_seconds(info.cancelled_at),
        request_counts=_RequestCounts(
            total=counts.total, completed=counts.completed, failed=counts.failed
        ),
        metadata=info.metadata,
    )


def completion_window(seconds: float) -> str:
    """OpenAI's spelling of a window: whole hours (``24h``) where it is some."""
    hours, rest = divmod(seconds, 3600)
    return f"{int(hours)}h" if rest == 0 else f"{seconds:g}s"


def _seconds(at: float | None) -> int | None:
    return None if at is None else int(at)
