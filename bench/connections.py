"""Case 6: what a secured connection and a shared reply topic cost, against the plain
default in the same run.

The no-op generate round trip of case 1 (bench/noop_worker.py, ledger on), closed loop at
16 and 64 in flight, four ways: plaintext with each client's private reply topic (the
baseline, measured first and last, its mean the reference); through the broker's SASL_SSL
listener (SCRAM-SHA-512, TLS) for the client and the worker; and two clients sharing one
reply topic of 4 partitions (each reads all of it and keeps its own replies), each with
half the callers.

``python -m bench.connections [--scale 0.5]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from bench.common import (
    BOOTSTRAP,
    add_repeat_option,
    helper,
    namespace,
    print_table,
    python_module,
    run_case,
)
from bench.noop_worker import NOOP_MODEL
from bench.roundtrip import PARTITIONS, WORKER_CONCURRENCY, closed_loop
from contracts.names import shared_reply_topic
from producer_sdk import FleetClient
from transport.topic_admin import ensure_topics
from workers.ops.local_kafka import local_secured_listeners

LEVELS = (16, 64)
JOBS = {16: 3000, 64: 6000}
WARMUP_JOBS = 300
SHARED_PARTITIONS = 4
VARIANTS = ("plaintext", "SASL_SSL", "shared reply topic", "plaintext again")


@contextlib.asynccontextmanager
async def _clients(variant: str, ns: str) -> AsyncIterator[list[FleetClient]]:
    async with contextlib.AsyncExitStack() as stack:
        if variant == "SASL_SSL":
            listeners = local_secured_listeners()
            client = FleetClient(listeners.sasl_ssl, security=listeners.sasl(), namespace=ns)
            yield [await stack.enter_async_context(client)]
        elif variant == "shared reply topic":
            topic = shared_reply_topic("bench", ns)
            await ensure_topics(BOOTSTRAP, {topic: SHARED_PARTITIONS})
            yield [
                await stack.enter_async_context(
                    FleetClient(BOOTSTRAP, namespace=ns, reply_topic=topic)
                )
                for _ in range(2)
            ]
        else:
            yield [await stack.enter_async_context(FleetClient(BOOTSTRAP, namespace=ns))]


async def _variant(variant: str, scale: float) -> dict[int, float]:
    ns = namespace("conn")
    command = python_module(
        "bench.noop_worker",
        "--namespace", ns,
        "--concurrency", str(WORKER_CONCURRENCY),
        "--partitions", str(PARTITIONS),
        *(["--sasl"] if variant == "SASL_SSL" else []),
    )  # fmt: skip
    with helper(command, log_name=f"connections-{ns}"):
        async with _clients(variant, ns) as clients:
            turn = 0

            async def call() -> object:
                nonlocal turn
                turn += 1
                client = clients[turn % len(clients)]
                return await client.generate("ping", model=NOOP_MODEL, timeout_s=60)

            await closed_loop(call, 16, WARMUP_JOBS)
            return {n: await closed_loop(call, n, max(int(JOBS[n] * scale), n)) for n in LEVELS}


async def run(scale: float) -> dict[str, dict[int, float]]:
    return {variant: await _variant(variant, scale) for variant in VARIANTS}


def report(results: dict[str, dict[int, float]]) -> str:
    baseline = {n: (results["plaintext"][n] + results["plaintext again"][n]) / 2 for n in LEVELS}
    rows = [
        [variant, *(f"{rates[n]:,.0f} ({rates[n] / baseline[n]:.2f}x)" for n in LEVELS)]
        for variant, rates in results.items()
    ]
    return print_table(
        "no-op round trip, jobs/s (ratio to the mean of the two plaintext runs)",
        ["variant", *(f"{n} in flight" for n in LEVELS)],
        rows,
    )


PINNED: dict[str, Any] = {
    "levels (jobs in flight)": LEVELS,
    "jobs per level": JOBS,
    "warm-up jobs per variant": WARMUP_JOBS,
    "request topic partitions": PARTITIONS,
    "worker concurrency": WORKER_CONCURRENCY,
    "SASL_SSL": "SCRAM-SHA-512 over TLS (the local CA), client and worker",
    "shared reply topic": f"{SHARED_PARTITIONS} partitions, 2 clients, callers alternating",
    "worker": "bench/noop_worker.py, ledger on, one process",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the job counts")
    add_repeat_option(parser)
    args = parser.parse_args()
    run_case(
        "connections",
        PINNED,
        lambda: asyncio.run(run(args.scale)),
        report,
        as_json=lambda results: {
            v: {str(n): r for n, r in rates.items()} for v, rates in results.items()
        },
        scale=args.scale,
        repeat=args.repeat,
    )


if __name__ == "__main__":
    main()
