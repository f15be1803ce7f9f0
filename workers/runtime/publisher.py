"""What the job runner needs of a Kafka producer: hand a message over (``send``, whose
future resolves once the broker stored it) or hand it over and wait (``send_and_wait``).

``AIOKafkaProducer`` satisfies it as it is, with no wrapper on the hot path; unit tests pass
an in-memory publisher and drive every outcome of a job without a broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

Headers = Sequence[tuple[str, bytes]]


class Publisher(Protocol):
    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Headers | None = None,
    ) -> asyncio.Future[Any]: ...

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Headers | None = None,
    ) -> Any: ...
