"""The SDK's partitioner: a request id lands on one partition every time, and request ids
spread over all of them."""

from __future__ import annotations

import collections

from transport.partitioning import key_partitioner

PARTITIONS = list(range(4))


def test_a_key_lands_on_the_same_partition_each_time() -> None:
    first = key_partitioner(b"order-42", PARTITIONS, PARTITIONS)
    assert all(key_partitioner(b"order-42", PARTITIONS, [0]) == first for _ in range(10))


def test_keys_spread_over_every_partition() -> None:
    counts = collections.Counter(
        key_partitioner(f"prefix-{n:x}".encode(), PARTITIONS, PARTITIONS) for n in range(4000)
    )
    assert set(counts) == set(PARTITIONS)
    assert min(counts.values()) > 800  # an even share is 1,000


def test_an_unkeyed_record_goes_to_an_available_partition() -> None:
    assert {key_partitioner(None, PARTITIONS, [2]) for _ in range(20)} == {2}
