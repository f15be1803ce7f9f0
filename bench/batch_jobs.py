"""Case 7: a 50,000-row embedding batch through the batch coordinator against calling the
same model directly, in the same run.

Fleet: `fleet worker batch` (the coordinator) and `fleet worker embed` as processes; the
corpus is submitted as one batch (`BatchClient.submit`: its rows written to the batch's
input topic) and timed from the submit until the batch is `completed`; then the results
are downloaded (timed apart). Direct: the same provider class and config, ``embed_sync`` on
64 texts a call, in a process of its own (case 3's): half the corpus before the batch and
half after it, so a drift in the machine's speed falls on both alike.

``python -m bench.batch_jobs [--rows 50000]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.common import (
    BOOTSTRAP,
    REDIS_URL,
    helper,
    namespace,
    print_table,
    python_module,
    run_case,
)
from bench.corpus import short_sentences
from bench.embed_corpus import (
    BATCH,
    BATCHING,
    PROVIDER_BATCH,
    THREADS,
    WORKER_CONCURRENCY,
    direct_embedder,
    worker_config,
)
from producer_sdk import BatchClient
from providers.embeddings.local_minilm import MINILM_MODEL
from transport.connection import KafkaConnection

IN_FLIGHT = 8  # the coordinator's requests of the batch in flight
CHUNK_ROWS = 256  # rows per embed request (the coordinator's default)
TARGET = 0.9
REDIS_GROWTH_MB = 20  # at most, over a 100,000-row batch (issue 25)


def _config(directory: Path) -> Path:
    """Case 3's worker settings, and the coordinator's."""
    config = worker_config(directory)
    batch = f"[batch]\nmax_in_flight = {IN_FLIGHT}\nembed_chunk_rows = {CHUNK_ROWS}\n"
    config.write_text(config.read_text() + batch)
    return config


def _corpus(path: Path, texts: list[str]) -> Path:
    with path.open("w") as out:
        for i, text in enumerate(texts):
            out.write(json.dumps({"custom_id": f"row-{i}", "text": text}) + "\n")
    return path


async def _through_batch(batches: BatchClient, corpus: Path, output: Path) -> dict[str, float]:
    started = time.perf_counter()
    info = await batches.submit(corpus, model=MINILM_MODEL)
    submitted = time.perf_counter()
    final = await batches.follow(info.id, timeout_s=3600)
    finished = time.perf_counter()
    assert final.status == "completed", final
    assert final.request_counts.failed == 0, final
    written = await batches.results(info.id, output, format="npy")
    downloaded = time.perf_counter()
    assert written.succeeded == final.request_counts.total
    return {
        "batch_s": finished - started,
        "submit_s": submitted - started,
        "download_s": downloaded - finished,
    }


async def redis_memory() -> int:
    """Bytes the local Redis holds (``used_memory``): the ledger must not grow with a batch."""
    redis = aioredis.from_url(REDIS_URL)
    try:
        return int((await redis.info("memory"))["used_memory"])
    finally:
        await redis.aclose()


async def run(rows: int) -> dict[str, Any]:
    texts = short_sentences(rows)
    ns = namespace("batch")
    half = rows // 2
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        config = _config(home)
        corpus = _corpus(home / "corpus.jsonl", texts)
        env = {"FLEET_NAMESPACE": ns, "OMP_NUM_THREADS": str(THREADS)}
        embed = python_module("workers.ops.cli", "worker", "embed", "--config", str(config))
        batch = python_module("workers.ops.cli", "worker", "batch", "--config", str(config))
        async with direct_embedder(f"direct-{ns}") as direct:
            with (
                helper(embed, log_name=f"embed-{ns}", env=env, ready_line="worker ready"),
                helper(batch, log_name=f"batch-{ns}", env=env, ready_line="coordinator started"),
            ):
                await direct.ready()
                connection = KafkaConnection(bootstrap_servers=BOOTSTRAP)
                async with BatchClient(connection, namespace=ns) as batches:
                    warm_rows = short_sentences(BATCH * IN_FLIGHT * 2, seed=1)
                    warm = _corpus(home / "warm.jsonl", warm_rows)
                    await _through_batch(batches, warm, home / "warm.npy")  # not counted
                    await direct.embed(texts[:512])
                    direct_s = await direct.embed(texts[:half])
                    memory_before = await redis_memory()
                    fleet = await _through_batch(batches, corpus, home / "out.npy")
                    fleet["redis_growth_mb"] = (await redis_memory() - memory_before) / 1e6
                    direct_s += await direct.embed(texts[half:])
    return {
        "rows": rows,
        "direct_per_s": rows / direct_s,
        "batch_per_s": rows / fleet["batch_s"],
        "direct_s": direct_s,
        **fleet,
    }


async def redis_growth(rows: int) -> dict[str, Any]:
    """Redis's growth over one batch of ``rows`` rows, the fleet side alone. The rows are a
    few words each: what the ledger could keep per request (its 256 vectors) does not depend
    on the texts' length, and short texts make a 100,000-row batch minutes, not an hour."""
    ns = namespace("batch-memory")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        config = _config(home)
        corpus = _corpus(home / "corpus.jsonl", [f"row {i}" for i in range(rows)])
        env = {"FLEET_NAMESPACE": ns, "OMP_NUM_THREADS": str(THREADS)}
        embed = python_module("workers.ops.cli", "worker", "embed", "--config", str(config))
        batch = python_module("workers.ops.cli", "worker", "batch", "--config", str(config))
        with (
            helper(embed, log_name=f"embed-{ns}", env=env, ready_line="worker ready"),
            helper(batch, log_name=f"batch-{ns}", env=env, ready_line="coordinator started"),
        ):
            connection = KafkaConnection(bootstrap_servers=BOOTSTRAP)
            async with BatchClient(connection, namespace=ns) as batches:
                before = await redis_memory()
                fleet = await _through_batch(batches, corpus, home / "out.npy")
                grown = (await redis_memory() - before) / 1e6
                keys, held = await namespace_keys(ns)
    return {
        "rows": rows,
        "batch_per_s": rows / fleet["batch_s"],
        "redis_growth_mb": grown,
        "ledger_keys": keys,
        "ledger_mb": held / 1e6,
    }


async def namespace_keys(ns: str) -> tuple[int, int]:
    """How many keys the ledger of namespace ``ns`` holds, and their bytes (MEMORY USAGE):
    the batch's own share of Redis, whatever else uses the same Redis meanwhile."""
    redis = aioredis.from_url(REDIS_URL)
    try:
        count = held = 0
        async for key in redis.scan_iter(match=f"fleet:{ns}:*", count=1000):
            count += 1
            held += await redis.memory_usage(key) or 0
        return count, held
    finally:
        await redis.aclose()


def report_growth(result: dict[str, Any]) -> str:
    grown = result["redis_growth_mb"]
    return print_table(
        f"Redis growth over one batch (at most {REDIS_GROWTH_MB} MB over 100,000 rows)",
        ["rows", "batch rows/s", "used_memory growth MB", "the ledger's keys", "their MB",
         "target"],
        [[result["rows"], result["batch_per_s"], f"{grown:.1f}", result["ledger_keys"],
          f"{result['ledger_mb']:.2f}", "pass" if grown <= REDIS_GROWTH_MB else "FAIL"]],
    )  # fmt: skip


PINNED = {
    "rows": "synthetic sentences of about 12 words (bench.corpus.short_sentences, seed 2026)",
    "coordinator": f"`fleet worker batch`, max_in_flight={IN_FLIGHT}, "
    f"embed_chunk_rows={CHUNK_ROWS}",
    "embed worker": f"`fleet worker embed`, concurrency {WORKER_CONCURRENCY}, batching {BATCHING}",
    "provider": f"local-minilm (int8 ONNX), threads={THREADS}, batch_size={PROVIDER_BATCH}",
    "direct": f"embed_sync on {BATCH} texts a call in a process of its own, half before the "
    "batch and half after",
    "timed": "submit (input written) until completed; the download (npy) apart",
    "Redis growth": "used_memory after the batch completed minus before its submit "
    f"(at most {REDIS_GROWTH_MB} MB)",
}


def report(result: dict[str, Any]) -> str:
    ratio = result["batch_per_s"] / result["direct_per_s"]
    return print_table(
        f"a batch through the coordinator, rows/s (target batch >= {TARGET:g} of direct)",
        ["rows", "direct", "batch", "batch / direct", "submit s", "download s",
         "Redis growth MB", "target"],
        [[
            result["rows"], result["direct_per_s"], result["batch_per_s"], f"{ratio:.2f}",
            result["submit_s"], result["download_s"], f"{result['redis_growth_mb']:.1f}",
            "pass" if ratio >= TARGET and result["redis_growth_mb"] <= REDIS_GROWTH_MB
            else "FAIL",
        ]],
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument(
        "--redis-growth", action="store_true", help="only Redis's growth over --rows rows"
    )
    args = parser.parse_args()
    if args.redis_growth:
        pinned = {**PINNED, "rows": "'row N', a few words each; the fleet side alone"}
        growth = lambda: asyncio.run(redis_growth(args.rows))  # noqa: E731
        run_case("batch_redis_growth", pinned, growth, report_growth)
        return
    run_case("batch_jobs", PINNED, lambda: asyncio.run(run(args.rows)), report)


if __name__ == "__main__":
    main()
