"""A batch's lifecycle states and why a batch stopped, as types: the wire spelling of each
state, the time each state keeps, and the rows a batch never ran."""

from __future__ import annotations

import typing

import msgspec
import pytest

from contracts.batch import (
    BatchInfo,
    BatchState,
    BatchStatus,
    RequestCounts,
    RowError,
    StopReason,
    decode_info,
)
from contracts.codec import encode
from contracts.errors import ErrorCode

INFO = BatchInfo(
    id="batch_s", endpoint="/v1/embeddings", model="m", status="validating",
    request_counts=RequestCounts(total=2), created_at=0, expires_at=10,
    completion_window_s=10, pages=1,
)  # fmt: skip


def test_the_wire_spells_each_state_by_its_value() -> None:
    assert set(typing.get_args(BatchStatus)) == {state.value for state in BatchState}
    moved = INFO.entering(BatchState.IN_PROGRESS, 3.0)
    assert msgspec.msgpack.decode(encode(moved))["status"] == "in_progress"
    assert decode_info(encode(moved)).state is BatchState.IN_PROGRESS


@pytest.mark.parametrize("state", [s for s in BatchState if s is not BatchState.VALIDATING])
def test_entering_a_state_keeps_when_in_its_own_field(state: BatchState) -> None:
    moved = INFO.entering(state, 7.5, errors=["why"])
    assert moved.state is state
    assert moved.errors == ["why"]
    times = {f: getattr(moved, f) for f in BatchInfo.__struct_fields__ if f.endswith("_at")}
    assert {f: t for f, t in times.items() if t is not None} == {
        "created_at": 0,
        "expires_at": 10,
        f"{state.value}_at": 7.5,
    }


def test_the_end_states() -> None:
    ended = {s for s in BatchState if s.ended}
    assert ended == {
        BatchState.COMPLETED, BatchState.FAILED, BatchState.EXPIRED, BatchState.CANCELLED,
    }  # fmt: skip
    assert [INFO.entering(s, 1.0).ended for s in (BatchState.CANCELLING, BatchState.EXPIRED)] == [
        False,
        True,
    ]


@pytest.mark.parametrize(
    ("state", "reason", "code"),
    [
        (BatchState.CANCELLED, StopReason.CANCELLED, "batch_cancelled"),
        (BatchState.EXPIRED, StopReason.EXPIRED, "batch_expired"),
        (BatchState.FAILED, StopReason.FAILED, "batch_failed"),
        (BatchState.COMPLETED, StopReason.FAILED, "batch_failed"),  # a row it lost
    ],
)
def test_rows_a_batch_never_ran_carry_why_it_stopped(
    state: BatchState, reason: StopReason, code: str
) -> None:
    assert StopReason.of(state) is reason
    error = reason.row_error()
    assert (error.code, error.retryable, error.stopped) == (code, True, reason)
    assert error.message == f"the batch {reason.state.value} before this row ran"
    assert msgspec.msgpack.decode(encode(error), type=RowError).stopped is reason


def test_a_row_that_ran_has_no_stop_reason() -> None:
    assert all(RowError(code=code.value, message="").stopped is None for code in ErrorCode)
    assert RowError(code="batch_of_a_newer_fleet", message="").stopped is None
