"""Case 3: embedding a corpus through the fleet against calling the same model directly.

Fleet: an embed worker process (`fleet worker embed`, local-minilm provider) and a
FleetClient sending requests of BATCH texts with IN_FLIGHT requests outstanding. Direct:
the same provider class with the same config in a process of its own
(bench/direct_embedder.py), ``embed_sync`` on the same BATCH-text slices. Neither side shares
a process with the client.

Both compete for the same cores with whatever else runs, and a machine's speed drifts, so
the two take turns in short blocks: direct, fleet, direct, ..., fleet, direct. Fleet block k
and direct block k embed the same prose (bench/corpus.py), and every block has the same
sentence lengths; each fleet block is held against the mean of the direct blocks either side
of it. The ratio is the median of those pairs, with their spread: drift moves both sides of
a pair alike, and the spread shows how much was left.

``python -m bench.embed_corpus [--sentences 10000] [--blocks 10]``. ``quick_ratio`` is the
short form, for the quick benchmark at the end of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    BOOTSTRAP,
    REDIS_URL,
    CpuMeter,
    helper,
    namespace,
    print_table,
    python_module,
    run_case,
    service_pids,
)
from bench.corpus import prose_block
from bench.direct_embedder import DirectEmbedder
from producer_sdk import FleetClient
from providers.embeddings.local_minilm import MINILM_MODEL

BATCH = 64  # texts per request (fleet) and per embed_sync call (direct)
IN_FLIGHT = 8  # fleet requests outstanding
THREADS = 2  # onnxruntime intra-op threads, both sides (the machine has 2 cores)
PROVIDER_BATCH = 32  # texts per ONNX run inside the provider (its default), both sides
BATCHING = {"max_texts": 64, "max_tokens": 16_384, "max_wait_ms": 5.0}  # --worker-max-texts
WORKER_CONCURRENCY = 64
SEED = 2026  # block k is prose_block(per_block, SEED + k)
WARM_SEED = 1
TARGET = 0.9


def _batches(texts: Sequence[str]) -> list[list[str]]:
    return [list(texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)]


async def through_fleet(client: FleetClient, texts: Sequence[str]) -> float:
    """Seconds to embed ``texts`` through the fleet, IN_FLIGHT requests outstanding."""
    queue = _batches(texts)
    position = 0

    async def caller() -> None:
        nonlocal position
        while position < len(queue):
            batch = queue[position]
            position += 1
            result = await client.embed(batch, model=MINILM_MODEL, timeout_s=300)
            assert len(result.vectors) == len(batch)

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(caller() for _ in range(IN_FLIGHT))), timeout=1800)
    return time.perf_counter() - started


def direct_embedder(log_name: str) -> DirectEmbedder:
    """The direct side with this case's settings (case 7 uses it too)."""
    return DirectEmbedder(
        threads=THREADS, provider_batch=PROVIDER_BATCH, call_size=BATCH, log_name=log_name
    )


def worker_config(directory: Path, max_texts: int = BATCH) -> Path:
    """The embed worker's settings; ``max_texts`` above BATCH lets a model call take the
    texts of several requests (sorted together, they pad less)."""
    config = directory / "embed-worker.toml"
    batching = ", ".join(f"{k} = {v}" for k, v in {**BATCHING, "max_texts": max_texts}.items())
    config.write_text(
        f'bootstrap_servers = "{BOOTSTRAP}"\n'
        f'redis_url = "{REDIS_URL}"\n'
        f"concurrency = {WORKER_CONCURRENCY}\n"
        f"embed_batching = {{ {batching} }}\n"
        f'embeddings = [{{ name = "local-minilm", config = {{ threads = {THREADS}, '
        f"batch_size = {PROVIDER_BATCH} }} }}]\n"
    )
    return config


async def run(count: int, blocks: int, max_texts: int = BATCH) -> dict[str, Any]:
    """``blocks`` fleet blocks of ``count // blocks`` sentences (down to whole requests),
    each between two direct blocks; the ratio of each fleet block to its neighbours, their
    median and spread."""
    per_block = max(1, count // blocks)
    per_block -= per_block % BATCH if per_block > BATCH else 0
    corpus = [prose_block(per_block, SEED + k) for k in range(blocks + 1)]
    # Enough to run every code path and connection once on both sides; the quick form
    # cannot afford more.
    warm = prose_block(min(per_block, BATCH * IN_FLIGHT // 2), WARM_SEED)
    ns = namespace("embed")
    direct_s: list[float] = []
    fleet_s: list[float] = []
    cpu: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = worker_config(Path(tmp), max_texts)
        command = python_module("workers.ops.cli", "worker", "embed", "--config", str(config))
        env = {"FLEET_NAMESPACE": ns, "OMP_NUM_THREADS": str(THREADS)}
        async with direct_embedder(f"direct-{ns}") as direct:
            # The worker starts while the direct process loads its model.
            with helper(command, log_name=f"embed-{ns}", env=env, ready_line="worker ready") as w:
                await direct.ready()
                async with FleetClient(BOOTSTRAP, namespace=ns) as client:
                    await through_fleet(client, warm)  # warm-up: both sides, not counted
                    await direct.embed(warm)
                    direct_cpu = CpuMeter({"direct": direct.pid})
                    fleet_cpu = CpuMeter({"worker": w.pid, "client": os.getpid(), **service_pids()})
                    for k in range(blocks + 1):
                        direct_cpu.start()
                        direct_s.append(await direct.embed(corpus[k]))
                        _add(cpu, direct_cpu.stop())
                        if k == blocks:
                            break
                        fleet_cpu.start()
                        fleet_s.append(await through_fleet(client, corpus[k]))
                        _add(cpu, fleet_cpu.stop())
    return summary(per_block, direct_s, fleet_s, cpu)


async def quick_ratio(sentences: int = 768, blocks: int = 3) -> dict[str, Any]:
    """The short form of this case for the quick benchmark at the end of CI: about 15-25 s
    on an idle 2-core machine with the services up (deploy/local/services.sh start). The
    result is ``run``'s: ``ratio`` (the median of the blocks' fleet/direct), ``ratio_min``,
    ``ratio_max``, ``direct_per_s`` and ``fleet_per_s`` among others."""
    return await run(sentences, blocks)


def _add(total: dict[str, float], more: dict[str, float]) -> None:
    for name, seconds in more.items():
        total[name] = total.get(name, 0.0) + seconds


def summary(
    per_block: int, direct_s: list[float], fleet_s: list[float], cpu: dict[str, float]
) -> dict[str, Any]:
    """Rates of either side and each fleet block's ratio to the mean of its two direct
    neighbours (as many rows in each, so the mean of their times)."""
    pairs = [(direct_s[k] + direct_s[k + 1]) / 2 / fleet_s[k] for k in range(len(fleet_s))]
    quartiles = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else [pairs[0]] * 3
    rows = per_block * len(fleet_s)
    return {
        "sentences": rows,
        "blocks": len(fleet_s),
        "per_block": per_block,
        # Over all blocks of each side (the direct side has one block more).
        "direct_per_s": per_block * len(direct_s) / sum(direct_s),
        "fleet_per_s": rows / sum(fleet_s),
        "ratio": statistics.median(pairs),
        "ratio_min": min(pairs),
        "ratio_max": max(pairs),
        "ratio_q1": quartiles[0],
        "ratio_q3": quartiles[2],
        "pairs": pairs,
        "direct_block_s": direct_s,
        "fleet_block_s": fleet_s,
        # CPU milliseconds a sentence, by process: the direct process in its blocks, the
        # worker, this client, Kafka and Redis in the fleet's (Kafka's and Redis's count
        # whatever else uses them meanwhile: a shared broker shows more than the fleet's).
        "cpu_ms_per_sentence": {
            name: 1000 * seconds / (per_block * len(direct_s) if name == "direct" else rows)
            for name, seconds in cpu.items()
        },
    }


def pinned(max_texts: int) -> dict[str, Any]:
    return {
        "texts per request / per direct call": BATCH,
        "fleet requests in flight": IN_FLIGHT,
        "provider": f"local-minilm (int8 ONNX), threads={THREADS}, batch_size={PROVIDER_BATCH}, "
        "max_run_tokens 512 (its default)",
        "worker embed_batching": {**BATCHING, "max_texts": max_texts},
        "worker concurrency": WORKER_CONCURRENCY,
        "worker": "`fleet worker embed`, own process, idempotency ledger on (default)",
        "direct": "the same provider and config in a process of its own (bench/direct_embedder.py)",
        "interleaving": "direct, fleet, ..., fleet, direct blocks; each fleet block against "
        "the mean of the direct blocks either side; ratio = median of those pairs",
        "sentences": "bench.corpus.prose_block: English-like prose of 20-400 characters, "
        f"median 18 words, the same lengths in every block (seed {SEED} + block)",
    }


def report(result: dict[str, Any]) -> str:
    ratio = print_table(
        f"corpus embedding in interleaved blocks, sentences/s (target fleet >= {TARGET:g} of "
        "direct: the median of the blocks' ratios)",
        ["sentences", "blocks", "direct", "fleet", "fleet / direct", "min-max", "IQR", "target"],
        [[
            result["sentences"], f"{result['blocks']} x {result['per_block']}",
            result["direct_per_s"], result["fleet_per_s"], f"{result['ratio']:.2f}",
            f"{result['ratio_min']:.2f}-{result['ratio_max']:.2f}",
            f"{result['ratio_q1']:.2f}-{result['ratio_q3']:.2f}",
            "pass" if result["ratio"] >= TARGET else "FAIL",
        ]],
    )  # fmt: skip
    cpu = result["cpu_ms_per_sentence"]
    fleet = [name for name in cpu if name != "direct"]
    by_process = print_table(
        "CPU ms a sentence, by process (direct: its own; fleet: worker, client, Kafka, Redis)",
        ["direct", "fleet", *fleet],
        [[f"{cpu.get('direct', 0.0):.2f}", f"{sum(cpu[n] for n in fleet):.2f}",
          *(f"{cpu[n]:.2f}" for n in fleet)]],
    )  # fmt: skip
    return f"{ratio}\n\n{by_process}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sentences", type=int, default=10_000, help="rows a side, in all")
    parser.add_argument("--blocks", type=int, default=10, help="fleet blocks (direct: one more)")
    parser.add_argument(
        "--worker-max-texts",
        type=int,
        default=BATCH,
        help=f"texts a model call of the worker may take (default {BATCH}: one request's)",
    )
    args = parser.parse_args()
    run_case(
        "embed_corpus",
        pinned(args.worker_max_texts),
        lambda: asyncio.run(run(args.sentences, args.blocks, args.worker_max_texts)),
        report,
    )


if __name__ == "__main__":
    main()
