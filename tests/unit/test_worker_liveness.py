"""What makes a worker call itself wedged: a fetch loop that stopped coming round, or a
Kafka producer whose sender task ended (every send would wait forever)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from providers.router import ModelRouter
from tests.integration.scripted_chat import ScriptedChat
from workers import Worker, WorkerSettings
from workers.handlers.generate import GenerateHandler


def _worker() -> Worker:
    handler = GenerateHandler(ModelRouter("chat", [ScriptedChat()]))
    return Worker("generate", WorkerSettings(), handler)


async def test_a_producer_whose_sender_ended_is_wedged(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")  # never started
    ended: asyncio.Task[Any] = asyncio.create_task(asyncio.sleep(0))
    await ended

    class Sender:
        sender_task = ended

    worker = _worker()
    assert worker._wedged(producer) is None  # not started: no sender task to judge
    monkeypatch.setattr(producer, "_sender", Sender())
    assert worker._wedged(producer) == "the Kafka producer's sender has stopped"
    monkeypatch.undo()
    await producer.stop()
