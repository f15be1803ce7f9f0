"""Which partition a keyed record goes to: the key's CRC-32 (zlib, in C).

aiokafka's default partitioner is Kafka's murmur2 written in Python: 13 us of the SDK's
CPU per request at 64 in flight (bench/NOTES.md), for a choice that needs no agreement
with other producers. Any consumer of a request topic runs any request, and the ledger
keeps a request id once across partitions; what a key needs is to land on the same
partition each time, which this gives.
"""

from __future__ import annotations

import random
import zlib


def key_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's partitioner interface: a keyed record by its key's CRC-32, an unkeyed one
    on any available partition."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[zlib.crc32(key) % len(all_partitions)]
