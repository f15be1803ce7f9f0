"""The SDK's check of a request before it goes out: what the workers could not read, or
the broker would not take, is refused here with a RequestRefused, and nothing is sent.

A request id outside the fleet's alphabet leaves a worker unable to read the request's
head, so it could not even answer: the caller would wait for its deadline. A record over
the producer's ``max_request_size`` would be refused by aiokafka with an error of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from contracts.envelope import IDENTIFIER_RULE, is_identifier
from contracts.errors import ContractViolation
from producer_sdk.errors import RequestRefused


def check_request_id(request_id: str) -> None:
    """RequestRefused unless the workers read ``request_id`` (``contracts.envelope``'s
    rule, the one they decode with)."""
    if not is_identifier(request_id):
        raise RequestRefused(
            f"request id {request_id[:200]!r} is not one the workers read: use {IDENTIFIER_RULE}",
            reason=ContractViolation.SCHEMA,
        )


def check_size(
    kind: str,
    key: bytes,
    value: bytes,
    headers: Sequence[tuple[str, bytes]],
    limit: int,
) -> None:
    """RequestRefused when the record is more than ``limit`` bytes, counted as the producer
    counts it (value, key and headers, and the record's own overhead)."""
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers))
    if size > limit:
        raise RequestRefused(
            f"the {kind} request is {len(value)} bytes ({size} as a Kafka record); the "
            f"producer sends at most {limit} (its max_request_size): send less per request",
            reason=ContractViolation.OVERSIZED,
        )


def producer_limit(producer: AIOKafkaProducer) -> int:
    """The largest record an AIOKafkaProducer sends: its ``max_request_size``, which aiokafka
    keeps private and checks only inside ``send``."""
    return int(producer._max_request_size)
