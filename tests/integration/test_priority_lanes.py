"""Priority lanes over the real broker and Redis: interactive work is served while a batch
floods the batch lane (the local MiniLM model, and generate with a scripted chat model); a
batch-lane job that fails retryably comes back on the batch lane; a batch-lane job can be
cancelled. The assertions are on the batch lane's progress, never on timing
(bench/lanes.py measures the latencies)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

import msgspec
import pytest
from aiokafka.structs import ConsumerRecord

from contracts import ErrorCode, Header, lane_topic
from contracts.names import Lane
from contracts.replies import EmbedResult
from producer_sdk import DeadlineExceeded, FleetClient
from providers.router import ModelRouter
from tests.conftest import Infra
from tests.integration.harness import serving, until
from tests.integration.scripted_chat import ScriptedChat
from tests.integration.test_categories_e2e import EMBED_MODEL, worker_of
from transport.topic_reader import read_to_end
from workers import Worker, WorkerSettings
from workers.handlers.generate import GenerateHandler
from workers.retry import RetryPolicy

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

MODEL = "scripted-model"
# The floods outlast the interactive requests several times over: the five embeds were
# answered while about 190 rows (3 of the requests) were done, the five generates (a second
# each) while about 14 of the 30 generates were, ~8 s in, on a loaded 2-core machine.
# (10,000 rows and 40 generates took 25 s to check the same; 2,000 rows, 16 s.)
ROWS, CHUNK = 1_024, 64
BATCH_GENERATES = 30  # at 2 batch jobs of a second each: 15 s of batch-lane work
T = TypeVar("T")


class Flood:
    """Requests sent on the batch lane and not awaited; counts those answered."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[object]] = []
        self.answered = 0

    def send(self, request: Callable[[], Awaitable[T]]) -> None:
        async def counted() -> object:
            result = await request()
            self.answered += 1
            return result

        self.tasks.append(asyncio.create_task(counted()))

    @property
    def outstanding(self) -> int:
        return len(self.tasks) - self.answered

    async def until_answered(self, count: int, timeout_s: float = 120) -> None:
        async with asyncio.timeout(timeout_s):
            while self.answered < count:
                await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED, timeout=1)

    async def results(self) -> list[object]:
        return await asyncio.gather(*self.tasks)


def _generate_worker(settings: WorkerSettings, chat: ScriptedChat) -> Worker:
    return Worker("generate", settings, GenerateHandler(ModelRouter("chat", [chat])))


@pytest.mark.model
@pytest.mark.timeout(900)
async def test_interactive_work_is_served_while_a_batch_floods_the_batch_lane(
    settings: WorkerSettings, client: FleetClient
) -> None:
    # The kinds' own concurrency (embed 64 interactive, 8 batch; generate 4 and 2), one
    # model worker: MiniLM may use both cores.
    settings = msgspec.structs.replace(settings, concurrency=None)
    chat = ScriptedChat(delay_s=1.0)  # each generate job holds its slot a second
    texts = [f"Sentence {i} about topic {i % 7}, in a batch." for i in range(ROWS)]
    embeds, generates = Flood(), Flood()
    async with (
        worker_of("embed", settings),
        serving(_generate_worker(settings, chat)),
    ):
        for start in range(0, ROWS, CHUNK):
            chunk = texts[start : start + CHUNK]
            embeds.send(
                partial(client.embed, chunk, model=EMBED_MODEL, lane="batch", timeout_s=600)
            )
        for i in range(BATCH_GENERATES):
            ask = partial(client.generate, f"batch {i}", model=MODEL, lane="batch", timeout_s=600)
            generates.send(ask)
        # Each interactive request is answered while its kind's batch lane still has work.
        await embeds.until_answered(2)  # the embed batch lane is running
        embed_outstanding = []
        for i in range(5):
            result = await client.embed(f"What is the capital of France? ({i})", model=EMBED_MODEL)
            assert result.dimension == 384
            embed_outstanding.append(embeds.outstanding)
        await generates.until_answered(1)
        generate_outstanding = []
        for _ in range(5):
            answer = await client.generate("hi", model=MODEL)
            assert answer.text == "Hello, world"
            generate_outstanding.append(generates.outstanding)
        assert min(embed_outstanding) > 0, embed_outstanding
        assert min(generate_outstanding) > 0, generate_outstanding
        # The lanes are checked: the batch generates left need not hold their slots a
        # second each to show that every one is answered.
        chat.delay_s = 0.0
        vectors = await embeds.results()
        await generates.results()
    assert sum(len(r.vectors) for r in vectors if isinstance(r, EmbedResult)) == ROWS
    assert chat.calls == BATCH_GENERATES + 5


async def _records_of(
    infra: Infra, topic: str, request_id: str
) -> list[ConsumerRecord[bytes, bytes]]:
    """The records of ``topic`` keyed ``request_id``, in offset order (the whole topic as it
    is now: the job has been answered, so both of its records are in)."""
    key = request_id.encode()
    found = [r async for r in read_to_end(infra.connection, topic) if r.key == key]
    return sorted(found, key=lambda r: r.offset)


async def test_a_batch_job_that_fails_retryably_comes_back_on_the_batch_lane(
    settings: WorkerSettings, client: FleetClient, infra: Infra
) -> None:
    chat = ScriptedChat(failures=[ErrorCode.RATE_LIMIT])
    settings = msgspec.structs.replace(settings, retry=RetryPolicy(max_retries=2, tiers_s=(0.5,)))
    async with serving(_generate_worker(settings, chat)):
        result = await client.generate("hi", model=MODEL, lane="batch", request_id="batch-retry")
    assert result.text == "Hello, world"
    assert result.attempt == 1
    assert chat.calls == 2

    def on(lane: Lane) -> str:
        return lane_topic("generate", lane, settings.namespace)

    original, redelivered = await _records_of(infra, on("batch"), "batch-retry")
    assert dict(original.headers).get(Header.RETRY_COUNT) is None
    assert dict(redelivered.headers)[Header.RETRY_COUNT] == b"1"
    assert dict(redelivered.headers)[Header.RETRY_LANE] == b"batch"
    assert await _records_of(infra, on("interactive"), "batch-retry") == []


async def test_a_batch_job_is_cancelled_when_its_caller_gives_up(
    settings: WorkerSettings, client: FleetClient
) -> None:
    chat = ScriptedChat(delay_s=30.0)
    async with serving(_generate_worker(settings, chat)) as worker:
        assert [lane.lane for lane in worker.lanes] == ["interactive", "batch"]
        with pytest.raises(DeadlineExceeded):
            await client.generate("slow", model=MODEL, lane="batch", timeout_s=2.0)
        await until(lambda: chat.cancelled == 1)  # the cancel reached it on the batch lane
    assert chat.calls == 1
