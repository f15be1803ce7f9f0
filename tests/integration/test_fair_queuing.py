"""Fair queuing inside a lane over the real broker (decision 0044): while tenant A's flood
fills a worker's only slot, tenant B's few jobs start before A's backlog drains. The
assertions are on the order the model saw the jobs in, never on timing."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import msgspec

from contracts import ChatMessage
from providers.chat import ChatEvent, ChatParams
from providers.router import ModelRouter
from tests.conftest import Infra
from tests.integration.harness import read_dead_letters, serving, until
from tests.integration.scripted_chat import ScriptedChat
from workers import Worker, WorkerSettings
from workers.handlers.generate import GenerateHandler
from workers.ops.inspect import consumer_lag
from workers.settings import FairnessSettings

MODEL = "scripted-model"
FLOOD = 8


class StartOrder(ScriptedChat):
    """Records the prompt of each call as it starts; holds every call until released."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[str] = []
        self.release = asyncio.Event()

    async def stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatEvent]:
        self.started.append(str(messages[-1].content))
        await self.release.wait()
        async for event in super().stream_chat(messages, params):
            yield event


async def test_a_tenants_few_jobs_start_before_a_flooding_tenants_backlog_drains(
    settings: WorkerSettings, infra: Infra, namespace: str
) -> None:
    # One slot, one partition: without fair queuing the jobs start in the log's order.
    settings = msgspec.structs.replace(
        settings,
        concurrency=1,
        batch_concurrency=0,
        partitions=1,
        fairness=FairnessSettings(window=16),
    )
    chat = StartOrder()
    worker = Worker("generate", settings, GenerateHandler(ModelRouter("chat", [chat])))

    def queued(tenant: str) -> float | None:
        labels = {"kind": "generate", "lane": "interactive", "tenant": tenant}
        return worker.metrics.registry.get_sample_value("fleet_tenant_jobs_queued", labels)

    async with (
        serving(worker),
        infra.client(namespace=namespace, tenant="a", default_timeout_s=60) as a,
        infra.client(namespace=namespace, tenant="b", default_timeout_s=60) as b,
    ):
        asks = [asyncio.create_task(a.generate(f"a-{i}", model=MODEL)) for i in range(FLOOD)]
        await until(lambda: queued("a") == FLOOD - 1)  # a-0 runs, the rest wait
        asks += [asyncio.create_task(b.generate(f"b-{i}", model=MODEL)) for i in range(2)]
        await until(lambda: queued("b") == 2)
        # What `fleet status --fairness` shows of this lane now.
        tenants = {t.tenant: t for t in worker.lanes[0].lane_state().tenants}
        assert (tenants["a"].queued, tenants["a"].in_flight) == (FLOOD - 1, 1)
        assert (tenants["b"].queued, tenants["b"].in_flight) == (2, 0)
        chat.release.set()
        answers = await asyncio.gather(*asks)
        # Every job but a-0 waited in the fair queue, and the count stays once they ran.
        tenants = {t.tenant: t for t in worker.lanes[0].lane_state().tenants}
        assert (tenants["a"].waited, tenants["b"].waited) == (FLOOD - 1, 2)
        assert (tenants["a"].queued, tenants["b"].queued) == (0, 0)
    assert all(answer.text == "Hello, world" for answer in answers)
    order = chat.started
    assert sorted(order) == sorted([f"a-{i}" for i in range(FLOOD)] + ["b-0", "b-1"])
    # In the log both of B's jobs come after all of A's; they started while at least four
    # of A's still waited.
    assert order.index("b-1") <= 4, order
    assert [p for p in order if p.startswith("a-")] == [f"a-{i}" for i in range(FLOOD)]


DEEP_FLOOD = 12


async def test_a_flood_deeper_than_the_window_is_parked_and_every_job_runs_once(
    settings: WorkerSettings, infra: Infra, namespace: str
) -> None:
    # One slot and a window of 4: A's flood of 12 is three windows deep, and B's records
    # are behind it in the log. Parked, A's excess leaves the window (decision 0045).
    settings = msgspec.structs.replace(
        settings,
        concurrency=1,
        batch_concurrency=0,
        partitions=1,
        fairness=FairnessSettings(window=4, park=True, park_delay_ms=200),
    )
    chat = StartOrder()
    worker = Worker("generate", settings, GenerateHandler(ModelRouter("chat", [chat])))
    labels = {"kind": "generate", "lane": "interactive"}

    def sample(metric: str, tenant: str) -> float:
        value = worker.metrics.registry.get_sample_value(metric, {**labels, "tenant": tenant})
        return value or 0

    async with (
        serving(worker),
        infra.client(namespace=namespace, tenant="a", default_timeout_s=60) as a,
        infra.client(namespace=namespace, tenant="b", default_timeout_s=60) as b,
    ):
        # B's first job takes the slot (and makes B an active tenant), then A floods.
        asks = [asyncio.create_task(b.generate("b-0", model=MODEL))]
        await until(lambda: chat.started == ["b-0"])
        asks += [asyncio.create_task(a.generate(f"a-{i}", model=MODEL)) for i in range(DEEP_FLOOD)]
        # A keeps its share of the window (4 x 1/2) waiting; the rest of its flood is parked.
        await until(lambda: sample("fleet_tenant_jobs_parked_total", "a") >= DEEP_FLOOD - 2)
        asks += [asyncio.create_task(b.generate(f"b-{i}", model=MODEL)) for i in (1, 2)]
        await until(lambda: sample("fleet_tenant_jobs_queued", "b") == 2)
        assert sample("fleet_tenant_jobs_queued", "a") == 2
        tenants = {t.tenant: t for t in worker.lanes[0].lane_state().tenants}
        assert tenants["a"].parked >= DEEP_FLOOD - 2
        assert tenants["b"].parked == 0
        chat.release.set()
        answers = await asyncio.gather(*asks)
    assert all(answer.text == "Hello, world" for answer in answers)
    # Every job ran once: one provider call per prompt, and nothing dead-lettered.
    calls = Counter(chat.started)
    assert calls == Counter([f"a-{i}" for i in range(DEEP_FLOOD)] + ["b-0", "b-1", "b-2"])
    dead_letters = [
        sample.value
        for metric in worker.metrics.registry.collect()
        for sample in metric.samples
        if sample.name == "fleet_dead_letters_total"
    ]
    assert sum(dead_letters) == 0
    assert await read_dead_letters(infra, namespace, expected=0) == []
    # `fleet lag` shows the park topic, and every parked record read back by its group (the
    # forwarder commits each one once its lane has it: the last commit may follow the last
    # answer by a round trip).
    async with asyncio.timeout(10):
        while True:
            parked = [r for r in await consumer_lag(settings) if r.source == "parked"]
            assert [(r.kind, r.group) for r in parked] == [
                ("generate", settings.topology.parked_group("generate"))
            ]
            assert parked[0].end >= DEEP_FLOOD - 2
            if parked[0].lag == 0:
                break
            await asyncio.sleep(0.05)
    # B's later jobs started while most of A's flood was still to run: the fair queue took
    # turns between A's two waiting records and B's two.
    assert chat.started.index("b-2") <= 4, chat.started
