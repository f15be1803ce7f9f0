"""A worker's start-up steps that need the broker, each tried until the broker answers: a
worker started while Kafka is away, or one that Kafka leaves while it starts, waits for it
(saying so once per outage) instead of exiting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from providers.call_retry import CallRetryPolicy
from transport.connection import KafkaConnection, start_client

log = logging.getLogger(__name__)

T = TypeVar("T")
Client = TypeVar("Client", AIOKafkaProducer, AIOKafkaConsumer)

# How often a worker tries a broker that is not there: 0.5 s, doubling up to 10 s.
BROKER_WAIT = CallRetryPolicy(base_delay_s=0.5, max_delay_s=10.0, jitter="none")


class StoppedWaiting(Exception):
    """The worker was told to stop while it waited for the broker."""


class BrokerWait:
    """Runs start-up steps of one worker, each again (with backoff) while the broker cannot
    be reached. A cluster that refuses the client (``KafkaAccessError``: wrong credentials,
    an untrusted certificate) is not waited for: that error ends the start."""

    def __init__(
        self,
        kind: str,
        connection: KafkaConnection,
        stopped: asyncio.Event,
        policy: CallRetryPolicy = BROKER_WAIT,
    ) -> None:
        self._kind = kind
        self._connection = connection
        self._stopped = stopped
        self._policy = policy

    async def step(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()``'s result, once it succeeds; ``StoppedWaiting`` if the worker is
        stopped first. ``attempt`` must leave nothing open when it fails (``start_client``
        closes a client whose start failed), so that each try starts afresh."""
        tries = 0
        while not self._stopped.is_set():
            try:
                result = await attempt()
            except (KafkaError, OSError, TimeoutError) as exc:
                if not tries:
                    log.warning(
                        "%s worker: Kafka at %s is not reachable (%s: %s); waiting for it",
                        self._kind, self._connection.describe(), what, exc,
                    )  # fmt: skip
                delay = self._policy.backoff_s(min(tries, 5))
                tries += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), timeout=delay)
                continue
            if tries:
                log.info(
                    "%s worker: Kafka is reachable after %d tries (%s)", self._kind, tries + 1, what
                )
            return result
        raise StoppedWaiting

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
