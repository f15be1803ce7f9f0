"""Fair queuing inside a lane (issue 29, decision 0044): three tenants on one generate lane,
a worker whose chat provider does no work but hold its slot ``SERVICE_MS``.

Closed-loop callers: tenant A runs ``FLOOD_CALLERS``, ten times B's and C's
``SMALL_CALLERS`` each, so A sends ten times their load and keeps the worker's slots full.
Runs, each in a fresh namespace, for ``--seconds``:

- ``alone``: B and C only; their p99 is the baseline;
- ``flood, no fairness`` (``window = 0``: jobs start in fetched order), ``flood, fair``
  (the default window, 4 per slot) and ``flood, fair, wide`` (a window that holds every
  caller's request): B's and C's p99 and the total throughput;
- ``weights 2:1:1``: all three flood (``FLOOD_CALLERS`` each), A weighted 2: each tenant's
  share of the jobs answered.

``python -m bench.fairness [--seconds 6]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping

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


async def run(
    callers: Mapping[str, int], seconds: float, fairness: FairnessSettings
) -> dict[str, list[float]]:
    """Each tenant's latencies (s) of the requests answered in ``seconds``, after a warm-up."""
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
        measuring.set()
        until = time.perf_counter() + seconds
        await asyncio.gather(*tasks)
    worker.stop()
    await serving
    return latencies


def p99_ms(values: list[float]) -> float:
    return round(percentile(values, 99) * 1000, 1) if values else float("nan")


async def main(seconds: float) -> None:
    small = {"b": SMALL_CALLERS, "c": SMALL_CALLERS}
    flood = {"a": FLOOD_CALLERS, **small}
    cases = [
        ("alone (B, C)", small, FairnessSettings()),
        ("flood, no fairness", flood, FairnessSettings(window=0)),
        ("flood, fair (window 16)", flood, FairnessSettings()),
        (f"flood, fair (window {WIDE_WINDOW})", flood, FairnessSettings(window=WIDE_WINDOW)),
    ]
    rows = []
    for title, callers, fairness in cases:
        lat = await run(callers, seconds, fairness)
        total = sum(len(v) for v in lat.values()) / seconds
        rows.append(
            [title, p99_ms(lat["b"]), p99_ms(lat["c"]), p99_ms(lat.get("a", [])), round(total)]
        )
    print_table(
        f"fairness: A {FLOOD_CALLERS} callers, B and C {SMALL_CALLERS} each, {SLOTS} slots "
        f"of {SERVICE_MS} ms, {seconds:g} s",
        ["case", "B p99 ms", "C p99 ms", "A p99 ms", "jobs/s"],
        rows,
    )
    weighted = FairnessSettings(weights={"a": 2.0}, window=3 * FLOOD_CALLERS)
    everyone = {"a": FLOOD_CALLERS, "b": FLOOD_CALLERS, "c": FLOOD_CALLERS}
    lat = await run(everyone, seconds, weighted)
    done = {t: len(v) for t, v in lat.items()}
    print_table(
        "weights a=2, b=1, c=1, all flooding: share of the jobs answered",
        ["tenant", "jobs", "share"],
        [[t, n, f"{n / sum(done.values()):.2f}"] for t, n in done.items()],
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=6.0)
    asyncio.run(main(parser.parse_args().seconds))
