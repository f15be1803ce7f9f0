"""Case 4: time to the first streamed chunk through the fleet, beyond the provider's own.

The worker process (bench/noop_worker.py --chat stamp) runs a chat provider whose first
piece carries two CLOCK_MONOTONIC readings: when the provider was called and when it
yielded. The SDK side reads the same clock (one machine) before it sends and when the first
TextDelta arrives, so

    fleet overhead = (first chunk received - request sent) - (yielded - called)

which is everything the fleet adds: SDK, Kafka both ways, worker, ledger claim, reply.

``python -m bench.ttfc [--requests 300]``
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.common import (
    BOOTSTRAP,
    add_repeat_option,
    helper,
    namespace,
    percentile,
    print_table,
    python_module,
    run_case,
)
from bench.noop_worker import NOOP_MODEL
from contracts import TextDelta
from producer_sdk import FleetClient

LEVELS = (1, 4)
WARMUP = 50
TARGET_P50_MS = 5.0
TARGET_P99_MS = 25.0


class Sample:
    __slots__ = ("overhead_ms", "reply_ms", "request_ms")

    def __init__(self, sent: int, called: int, yielded: int, received: int) -> None:
        self.overhead_ms = ((received - sent) - (yielded - called)) / 1e6
        self.request_ms = (called - sent) / 1e6  # SDK -> Kafka -> worker -> provider call
        self.reply_ms = (received - yielded) / 1e6  # provider yield -> worker -> Kafka -> SDK


async def one(client: FleetClient) -> Sample:
    sent = time.monotonic_ns()
    stream = client.stream_generate("ping", model=NOOP_MODEL, timeout_s=30)
    sample: Sample | None = None
    async for event in stream:
        if sample is None and isinstance(event, TextDelta):
            received = time.monotonic_ns()
            called, yielded = (int(v) for v in event.text.split())
            sample = Sample(sent, called, yielded, received)
    assert sample is not None, "the stream carried no text delta"
    return sample


async def level(client: FleetClient, in_flight: int, requests: int) -> list[Sample]:
    samples: list[Sample] = []
    remaining = requests

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            samples.append(await one(client))

    await asyncio.wait_for(asyncio.gather(*(caller() for _ in range(in_flight))), timeout=300)
    return samples


async def run(requests: int) -> dict[int, dict[str, float]]:
    ns = namespace("ttfc")
    command = python_module("bench.noop_worker", "--namespace", ns, "--chat", "stamp")
    results: dict[int, dict[str, float]] = {}
    with helper(command, log_name=f"ttfc-{ns}"):
        async with FleetClient(BOOTSTRAP, namespace=ns) as client:
            await level(client, 4, WARMUP)
            for n in LEVELS:
                samples = await level(client, n, requests)
                overhead = [s.overhead_ms for s in samples]
                results[n] = {
                    "requests": len(samples),
                    "p50_ms": percentile(overhead, 50),
                    "p90_ms": percentile(overhead, 90),
                    "p99_ms": percentile(overhead, 99),
                    "max_ms": max(overhead),
                    "request_leg_p50_ms": percentile([s.request_ms for s in samples], 50),
                    "reply_leg_p50_ms": percentile([s.reply_ms for s in samples], 50),
                }
    return results


PINNED = {
    "worker": "bench/noop_worker.py --chat stamp, own process, idempotency ledger on",
    "worker concurrency": 64,
    "request topic partitions": 4,
    "producers": "linger_ms=0, acks=all, idempotent (SDK and worker defaults)",
    "consumers' fetch": "aiokafka defaults (fetch_max_wait_ms=500, fetch_min_bytes=1)",
    "levels (requests in flight)": LEVELS,
    "warm-up requests": WARMUP,
}


def report(results: dict[int, dict[str, float]]) -> str:
    rows = []
    for n, r in results.items():
        verdict = "pass" if r["p50_ms"] < TARGET_P50_MS and r["p99_ms"] < TARGET_P99_MS else "FAIL"
        rows.append(
            [n, int(r["requests"]), r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"],
             r["request_leg_p50_ms"], r["reply_leg_p50_ms"], verdict]
        )  # fmt: skip
    return print_table(
        f"time to first chunk beyond the provider's own, ms "
        f"(target p50 < {TARGET_P50_MS:g}, p99 < {TARGET_P99_MS:g})",
        [
            "in flight",
            "requests",
            "p50",
            "p90",
            "p99",
            "max",
            "request leg p50",
            "reply leg p50",
            "target",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300, help="requests per level")
    add_repeat_option(parser)
    args = parser.parse_args()
    run_case(
        "ttfc",
        PINNED,
        lambda: asyncio.run(run(args.requests)),
        report,
        as_json=lambda results: {str(n): r for n, r in results.items()},
        repeat=args.repeat,
    )


if __name__ == "__main__":
    main()
