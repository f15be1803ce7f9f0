"""A worker's start-up steps that need the broker, each tried until the broker answers: a
worker started while Kafka is away, or one that Kafka leaves while it starts, waits for it
(saying so once per outage) instead of exiting. The wait itself is workers/service_wait.py's,
which a provider's Redis shares."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from providers.call_retry import CallRetryPolicy
from transport.connection import KafkaConnection, start_client
from workers.service_wait import SERVICE_WAIT, until_reachable

T = TypeVar("T")
Client = TypeVar("Client", AIOKafkaProducer, AIOKafkaConsumer)


class BrokerWait:
    """Runs start-up steps of one worker, each again (with backoff) while the broker cannot
    be reached. A cluster that refuses the client (``KafkaAccessError``: wrong credentials,
    an untrusted certificate) is not waited for: that error ends the start."""

    def __init__(
        self,
        kind: str,
        connection: KafkaConnection,
        stopped: asyncio.Event,
        policy: CallRetryPolicy = SERVICE_WAIT,
    ) -> None:
        self._kind = kind
        self._connection = connection
        self._stopped = stopped
        self._policy = policy

    async def step(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()``'s result, once it succeeds; ``StoppedWaiting`` if the worker is
        stopped first. ``attempt`` must leave nothing open when it fails (``start_client``
        closes a client whose start failed), so that each try starts afresh."""
        return await until_reachable(
            attempt,
            unreachable=_broker_away,
            who=f"{self._kind} worker",
            service=f"Kafka at {self._connection.describe()}",
            what=what,
            stopped=self._stopped,
            policy=self._policy,
        )

    async def started(
        self, stack: contextlib.AsyncExitStack, what: str, make: Callable[[], Client]
    ) -> Client:
        """A client made by ``make`` and started, a fresh one per try while the broker is
        away; stopped when ``stack`` closes."""

        async def attempt() -> Client:
            client = make()
            await start_client(client, self._connection)  # stops it if it failed
            return client

        client = await self.step(what, attempt)
        stack.push_async_callback(client.stop)
        return client


def _broker_away(exc: Exception) -> bool:
    """The broker not reachable or not answering. A refusal (``KafkaAccessError``, a
    FleetError) is not its absence."""
    return isinstance(exc, (KafkaError, OSError, TimeoutError))
