"""Local rerank latency: 100 documents of 64 tokens against one query, ranked by the MiniLM
bi-encoder (`local-minilm-biencoder`), called directly and through the fleet (an in-process
rerank worker, Kafka and Redis on loopback, the ledger on).

``python -m bench.rerank_local [--requests 50]``; prints p50 and p95 of each side.
"""

from __future__ import annotations

import argparse
import asyncio
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
WARMUP = 5
TARGET_P50_MS = 100.0
QUERY = "Which of these reports speaks of the harbour's new schedule?"


def documents() -> list[str]:
    """Prose long enough that each document is cut to exactly TOKENS_PER_DOC tokens."""
    rng = random.Random(28)
    return [_sentence(rng, 80) for _ in range(DOCUMENTS)]


async def timed(call: Callable[[], Awaitable[object]], requests: int) -> list[float]:
    for _ in range(WARMUP):
        await call()
    samples = []
    for _ in range(requests):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def report(side: str, samples: list[float]) -> None:
    p50 = statistics.median(samples)
    p95 = statistics.quantiles(samples, n=20)[18]
    verdict = "holds" if p50 < TARGET_P50_MS else "misses"
    print(f"{side:7} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  ({verdict} p50 < {TARGET_P50_MS:g} ms)")


async def main(requests: int) -> None:
    docs = documents()
    direct = rerank_providers.create("local-minilm-biencoder")
    await direct.load()
    try:
        report(
            "direct",
            await timed(
                lambda: direct.rerank(
                    QUERY, docs, model=BIENCODER_MODEL, max_tokens_per_doc=TOKENS_PER_DOC
                ),
                requests,
            ),
        )
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
            samples = await timed(
                lambda: fleet.rerank(
                    QUERY, docs, model=BIENCODER_MODEL, max_tokens_per_doc=TOKENS_PER_DOC
                ),
                requests,
            )
        report("fleet", samples)
    finally:
        worker.stop()
        await running


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=50)
    asyncio.run(main(parser.parse_args().requests))
