"""A worker that starts while the broker is away waits for it, at every start-up step that
needs it, and serves once it is back: the broker stands behind a gate that a test opens
and closes (its bootstrap address; later connections go to the broker's own address).
A request Kafka does not take is a typed error by its deadline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import msgspec
import pytest
from aiokafka.errors import KafkaTimeoutError

from producer_sdk import BrokerError
from providers.router import ModelRouter
from tests.conftest import Infra
from tests.integration.harness import until
from tests.integration.scripted_chat import ScriptedChat
from workers import Worker, WorkerSettings
from workers.handlers.generate import GenerateHandler

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


class BootstrapGate:
    """A local port in front of the broker: refused while closed (a socket bound there, not
    listening, keeps the port); once opened, each connection is piped to the broker. Opened
    for ``connections``, it closes again once it has accepted that many."""

    def __init__(self, broker: str) -> None:
        host, _, port = broker.rpartition(":")
        self._broker = (host, int(port))
        self._held: socket.socket | None = socket.socket()
        self._held.bind(("127.0.0.1", 0))
        self.port: int = self._held.getsockname()[1]
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def open(self, connections: int | None = None) -> None:
        assert self._held is not None
        assert self._server is None
        self._held.close()
        self._held = None
        left = [connections]

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if left[0] is not None:
                left[0] -= 1
                if left[0] == 0:
                    self._close_listener()
            up_reader, up_writer = await asyncio.open_connection(*self._broker)
            for source, sink in ((reader, up_writer), (up_reader, writer)):
                task = asyncio.create_task(_pipe(source, sink))
                self._pipes.add(task)
                task.add_done_callback(self._pipes.discard)

        self._server = await asyncio.start_server(
            accept, "127.0.0.1", self.port, reuse_address=True
        )

    def _close_listener(self) -> None:
        """Stop accepting (the connections already piped go on), and keep the port."""
        assert self._server is not None
        self._server.close()
        self._server = None
        self._held = socket.socket()
        self._held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._held.bind(("127.0.0.1", self.port))

    async def aclose(self) -> None:
        if self._server is not None:
            self._close_listener()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._held is not None:
            self._held.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except ConnectionError:
        pass
    finally:
        sink.close()


class _Said(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def waits(self) -> list[str]:
        return [line for line in self.lines if "is not reachable" in line]


async def test_a_worker_waits_for_the_broker_at_every_start_up_step(
    infra: Infra, settings: WorkerSettings, namespace: str
) -> None:
    gate = BootstrapGate(infra.bootstrap_servers)
    said = _Said()
    logger = logging.getLogger("workers.service_wait")
    logger.addHandler(said)
    logger.setLevel(logging.INFO)
    behind_gate = msgspec.structs.replace(settings, bootstrap_servers=gate.address)
    worker = Worker("generate", behind_gate, GenerateHandler(ModelRouter("chat", [ScriptedChat()])))
    task = asyncio.create_task(worker.run())
    try:
        # Away from the start: the topics wait.
        await until(lambda: len(said.waits()) == 1 or task.done())
        assert not task.done(), "the worker exited instead of waiting"
        assert "creating its topics" in said.waits()[0]
        # Back for one connection (the topics are created), then away again.
        await gate.open(connections=1)
        await until(lambda: len(said.waits()) == 2 or task.done())
        assert not task.done(), "the worker exited when the broker went away as it started"
        assert "starting its producer" in said.waits()[1]
        await gate.open()
        await asyncio.wait_for(worker.ready.wait(), timeout=60)
        async with infra.client(namespace=namespace) as client:
            result = await client.generate("hello", model="scripted-model", timeout_s=30)
        assert result.text == "Hello, world"
        assert sum("is reachable after" in line for line in said.lines) == 2
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=60)
        logger.removeHandler(said)
        with contextlib.suppress(OSError):
            await gate.aclose()


async def test_a_request_kafka_does_not_take_is_a_broker_error_by_its_deadline(
    infra: Infra, namespace: str
) -> None:
    """No worker made the request topic: Kafka cannot take the request. The caller gets a
    typed, retryable error at its deadline, not aiokafka's after the producer's 40 s."""
    async with infra.client(namespace=namespace) as client:
        with pytest.raises(BrokerError, match="before the request's deadline") as raised:
            await client.generate("hello", model="scripted-model", timeout_s=1.0)
    assert raised.value.retryable
    assert isinstance(raised.value.cause, KafkaTimeoutError)
