"""What the SDK refuses before sending (producer_sdk/sendable.py): the request ids the
workers could not read, by the workers' own rule, and records over the producer's limit."""

from __future__ import annotations

import pytest

from contracts import ErrorCode
from contracts.codec import decode_request, encode
from contracts.errors import ContractError, ContractViolation
from producer_sdk import RequestRefused
from producer_sdk.sendable import check_request_id, check_size
from tests.unit.job_runner_harness import _request

IDS = ["order 42/x", "", "a" * 129, "é", "a:b", "job-1", "a" * 128, "A.b_c-9"]


@pytest.mark.parametrize("request_id", IDS)
def test_the_sdk_refuses_exactly_the_ids_a_worker_cannot_read(request_id: str) -> None:
    try:
        decode_request("generate", encode(_request(request_id)))
    except ContractError:
        with pytest.raises(RequestRefused) as refused:
            check_request_id(request_id)
        assert refused.value.reason is ContractViolation.SCHEMA
        assert refused.value.code is ErrorCode.INVALID_INPUT
        assert "A-Z a-z 0-9 _ . -" in str(refused.value)
    else:
        check_request_id(request_id)


def test_a_record_over_the_producers_limit_is_refused_with_its_size() -> None:
    value = b"x" * 20_000_000
    with pytest.raises(RequestRefused) as refused:
        check_size("generate", b"job-1", value, [], limit=1_048_576)
    assert refused.value.reason is ContractViolation.OVERSIZED
    assert "20000000 bytes" in str(refused.value)
    assert "1048576" in str(refused.value)
    check_size("generate", b"job-1", b"x" * 1000, [], limit=1_048_576)
