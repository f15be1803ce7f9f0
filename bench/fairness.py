"""Fair queuing inside a lane (issue 29, decision 0044): three tenants on one generate lane,
a worker whose chat provider does no work but hold its slot ``SERVICE_MS``.

Closed-loop callers: tenant A runs ``FLOOD_CALLERS``, ten times B's and C's
``SMALL_CALLERS`` each, so A sends ten times their load and keeps the worker's slots full.
Runs, each in a fresh namespace, for ``--seconds``:

- ``alone``: B and C only; their p99 is the baseline;
- ``flood, no fairness`` (``window = 0``: jobs start in fetched order), ``flood, fair``
  (the default window, 4 per slot), ``flood, fair, wide`` (a window that holds every
  caller's request) and ``flood, fair, parking`` (the default window, A's excess parked:
  decision 0045): B's and C's p99, the total throughput, the records parked and the
  process's CPU per job answered (worker and callers share the process);
- ``weights 2:1:1``: all three flood (``FLOOD_CALLERS`` each), A weighted 2, with a wide
  window and with parking at the default window: each tenant's share of the jobs answered.

``python -m bench.fairness [--seconds 6]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import NamedTuple

from bench.common import BOOTSTRAP, REDIS_URL, namespace, percentile, print_table
from contracts import ChatMessage, Usage
from producer_sdk import FleetClient
from providers.chat import ChatCapabilities, ChatDone, ChatEvent, ChatParams, TextPiece
from providers.router import ModelRouter
from workers import Worker, WorkerSettings
from workers.handlers.generate import GenerateHandler
from workers.settings import FairnessSettings

MODEL = "noop"
SERVICE_MS = 20  # what each call holds its slot: 4 slots serve 200 jobs a second
SLOTS = 4
FLOOD_CALLERS = 40
SMALL_CALLERS = 4
WIDE_WINDOW = FLOOD_CALLERS + 2 * SMALL_CALLERS


class HoldingChat:
    """Answers "ok" after holding its slot SERVICE_MS, doing no work."""

    name = "holding"

    @property
    def capabilities(self) -> ChatCapabilities:
        return ChatCapabilities(models=(MODEL,))

    async def stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatEvent]:
        await asyncio.sleep(SERVICE_MS / 1000)
        yield TextPiece("ok")
        yield ChatDone(finish_reason="stop", usage=Usage(input_tokens=1, output_tokens=1))

    async def load(self) -> None:
        return None

    async def health(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


class Measured(NamedTuple):
    latencies: dict[str, list[float]]  # each tenant's, in seconds
    parked: dict[str, float]  # each tenant's records parked while measuring
    cpu_s: float  # the process's CPU time while measuring


async def run(callers: Mapping[str, int], seconds: float, fairness: FairnessSettings) -> Measured:
    """Each tenant's latencies of the requests answered in ``seconds`` after a warm-up, the
    records parked and the CPU time spent meanwhile."""
    ns = namespace("fair")
    settings = WorkerSettings(
        bootstrap_servers=BOOTSTRAP,
        redis_url=REDIS_URL,
        namespace=ns,
        concurrency=SLOTS,
        batch_concurrency=0,
        partitions=2,
        memory=None,
        fairness=fairness,
    )
    handler = GenerateHandler(ModelRouter("chat", [HoldingChat()]), memory=None)
    worker = Worker("generate", settings, handler)
    serving = asyncio.create_task(worker.run())
    await worker.ready.wait()
    latencies: dict[str, list[float]] = {tenant: [] for tenant in callers}
    measuring = asyncio.Event()
    until = 0.0

    async def caller(client: FleetClient, tenant: str) -> None:
        while not until or time.perf_counter() < until:
            sent = time.perf_counter()
            await client.generate("hi", model=MODEL, max_tokens=16, timeout_s=120)
            if measuring.is_set() and (not until or time.perf_counter() < until):
                latencies[tenant].append(time.perf_counter() - sent)

    async with contextlib.AsyncExitStack() as stack:
        clients = {
            t: await stack.enter_async_context(FleetClient(BOOTSTRAP, namespace=ns, tenant=t))
            for t in callers
        }
        tasks = [
            asyncio.create_task(caller(clients[t], t)) for t, n in callers.items() for _ in range(n)
        ]
        await asyncio.sleep(1.0)  # warm-up: the flood's backlog is built
        parked_before, cpu = parked_so_far(worker, callers), time.process_time()
        measuring.set()
        until = time.perf_counter() + seconds
        await asyncio.sleep(seconds)
        parked = {t: n - parked_before[t] for t, n in parked_so_far(worker, callers).items()}
        cpu = time.process_time() - cpu
        await asyncio.gather(*tasks)
    worker.stop()
    await serving
    return Measured(latencies, parked, cpu)


def parked_so_far(worker: Worker, tenants: Iterable[str]) -> dict[str, float]:
    metric = worker.metrics.registry.get_sample_value
    labels = {"kind": "generate", "lane": "interactive"}
    return {
        t: metric("fleet_tenant_jobs_parked_total", {**labels, "tenant": t}) or 0 for t in tenants
    }


def p99_ms(values: list[float]) -> float:
    return round(percentile(values, 99) * 1000, 1) if values else float("nan")


async def main(seconds: float) -> None:
    small = {"b": SMALL_CALLERS, "c": SMALL_CALLERS}
    flood = {"a": FLOOD_CALLERS, **small}
    cases = [
        ("alone (B, C)", small, FairnessSettings(park=False)),
        ("flood, no fairness", flood, FairnessSettings(window=0)),
        ("flood, fair (window 16)", flood, FairnessSettings(park=False)),
        (
            f"flood, fair (window {WIDE_WINDOW})",
            flood,
            FairnessSettings(window=WIDE_WINDOW, park=False),
        ),
        ("flood, fair, parking (window 16)", flood, FairnessSettings(park=True)),
    ]
    rows = []
    for title, callers, fairness in cases:
        measured = await run(callers, seconds, fairness)
        lat = measured.latencies
        jobs = sum(len(v) for v in lat.values())
        rows.append(
            [
                title,
                p99_ms(lat["b"]),
                p99_ms(lat["c"]),
                p99_ms(lat.get("a", [])),
                round(jobs / seconds),
                round(sum(measured.parked.values()) / seconds),
                round(measured.cpu_s * 1000 / max(jobs, 1), 2),
            ]
        )
    print_table(
        f"fairness: A {FLOOD_CALLERS} callers, B and C {SMALL_CALLERS} each, {SLOTS} slots "
        f"of {SERVICE_MS} ms, {seconds:g} s",
        ["case", "B p99 ms", "C p99 ms", "A p99 ms", "jobs/s", "parked/s", "CPU ms/job"],
        rows,
    )
    everyone = {"a": FLOOD_CALLERS, "b": FLOOD_CALLERS, "c": FLOOD_CALLERS}
    weighted = [
        (
            f"window {3 * FLOOD_CALLERS}",
            FairnessSettings(weights={"a": 2.0}, window=3 * FLOOD_CALLERS, park=False),
        ),
        ("window 16, parking", FairnessSettings(weights={"a": 2.0}, park=True)),
    ]
    rows = []
    for title, fairness in weighted:
        lat = (await run(everyone, seconds, fairness)).latencies
        done = {t: len(v) for t, v in lat.items()}
        rows += [[title, t, n, f"{n / sum(done.values()):.2f}"] for t, n in done.items()]
    print_table(
        "weights a=2, b=1, c=1, all flooding: share of the jobs answered",
        ["case", "tenant", "jobs", "share"],
        rows,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=6.0)
    asyncio.run(main(parser.parse_args().seconds))
