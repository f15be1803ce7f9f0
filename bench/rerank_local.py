"""Local rerank latency: 100 documents of 64 tokens against one query, ranked by the MiniLM
bi-encoder (`local-minilm-biencoder`), called directly and through the fleet (an in-process
rerank worker, Kafka and Redis on loopback, the ledger on).

Each side runs twice: **cold**, fresh documents every request, so every document is
embedded; and **warm**, the same 100 documents every request, whose vectors the provider
keeps after the first (decision 0047), so only the query is embedded. The target of issue
28 is a cold one; a warm number meets it only for documents reranked before.

``python -m bench.rerank_local [--requests 15] [--warm-requests 100]``; prints p50 and p95
of each, and the CPU a request costs this process (the provider's threads, and on the fleet
side the worker's and client's too; Kafka and Redis are not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable

from bench.common import BOOTSTRAP, REDIS_URL, namespace, start_services
from bench.corpus import _sentence
from producer_sdk import FleetClient
from providers.rerank import rerank_providers
from providers.rerank.local_minilm_biencoder import BIENCODER_MODEL
from workers import WorkerSettings, build_worker

DOCUMENTS = 100
TOKENS_PER_DOC = 64
WARMUP = 3
TARGET_P50_MS = 100.0
QUERY = "Which of these reports speaks of the harbour's new schedule?"

Rerank = Callable[[list[str]], Awaitable[object]]


def documents(seed: int = 28) -> list[str]:
    """Prose long enough that each document is cut to exactly TOKENS_PER_DOC tokens."""
    rng = random.Random(seed)
    return [_sentence(rng, 80) for _ in range(DOCUMENTS)]


class Samples:
    def __init__(self) -> None:
        self.wall_ms: list[float] = []
        self.cpu_ms: list[float] = []


async def timed(rerank: Rerank, batches: list[list[str]]) -> Samples:
    """Rerank each of ``batches`` after WARMUP untimed requests of the first ones."""
    for docs in batches[:WARMUP]:
        await rerank(docs)
    samples = Samples()
    for docs in batches[WARMUP:]:
        cpu = time.process_time()
        start = time.perf_counter()
        await rerank(docs)
        samples.wall_ms.append((time.perf_counter() - start) * 1000)
        samples.cpu_ms.append((time.process_time() - cpu) * 1000)
    return samples


def report(side: str, samples: Samples) -> None:
    p50 = statistics.median(samples.wall_ms)
    p95 = statistics.quantiles(samples.wall_ms, n=20)[18]
    cpu = statistics.median(samples.cpu_ms)
    verdict = "holds" if p50 < TARGET_P50_MS else "misses"
    print(
        f"{side:12} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  CPU p50 {cpu:7.1f} ms"
        f"  ({verdict} p50 < {TARGET_P50_MS:g} ms)  load {os.getloadavg()[0]:.1f}",
        flush=True,
    )


async def both(side: str, rerank: Rerank, cold: list[list[str]], warm_requests: int) -> None:
    """Cold first: the warm side's documents would otherwise be among the kept ones."""
    report(f"{side} cold", await timed(rerank, cold))
    same = documents()
    report(f"{side} warm", await timed(rerank, [same] * (WARMUP + warm_requests)))


async def main(requests: int, warm_requests: int) -> None:
    # Fresh documents for every cold request of either side: none is kept from another.
    seeds = iter(range(1000, 1000 + 2 * (WARMUP + requests)))
    direct_cold = [documents(next(seeds)) for _ in range(WARMUP + requests)]
    fleet_cold = [documents(next(seeds)) for _ in range(WARMUP + requests)]
    distinct = {doc for batch in direct_cold + fleet_cold for doc in batch}
    assert len(distinct) == 2 * (WARMUP + requests) * DOCUMENTS, "cold documents repeat"
    print(f"load average at the start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    direct = rerank_providers.create("local-minilm-biencoder")
    await direct.load()

    async def direct_rerank(docs: list[str]) -> object:
        return await direct.rerank(
            QUERY, docs, model=BIENCODER_MODEL, max_tokens_per_doc=TOKENS_PER_DOC
        )

    try:
        await both("direct", direct_rerank, direct_cold, warm_requests)
    finally:
        await direct.aclose()
    start_services()
    ns = namespace("bench-rerank")
    settings = WorkerSettings(bootstrap_servers=BOOTSTRAP, redis_url=REDIS_URL, namespace=ns)
    worker = await build_worker("rerank", settings)
    running = asyncio.create_task(worker.run())
    await worker.ready.wait()
    try:
        async with FleetClient(BOOTSTRAP, namespace=ns) as fleet:

            async def fleet_rerank(docs: list[str]) -> object:
                return await fleet.rerank(
                    QUERY, docs, model=BIENCODER_MODEL, max_tokens_per_doc=TOKENS_PER_DOC
                )

            await both("fleet", fleet_rerank, fleet_cold, warm_requests)
    finally:
        worker.stop()
        await running


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=15, help="timed cold requests a side")
    parser.add_argument("--warm-requests", type=int, default=100, help="timed warm requests a side")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.requests, arguments.warm_requests))
