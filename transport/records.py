"""The Kafka record type the workers handle, and header lookup."""

from __future__ import annotations

from typing import TypeAlias

from aiokafka.structs import ConsumerRecord

Record: TypeAlias = ConsumerRecord[bytes, bytes]


def header(record: Record, name: str) -> str | None:
    """The first value of header ``name``, decoded, or None."""
    for key, value in record.headers:
        if key == name:
            return bytes(value).decode(errors="replace")
    return None
