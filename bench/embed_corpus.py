"""Case 3: embedding a corpus through the fleet against calling the same model directly.

Fleet: an embed worker process (`fleet worker embed`, local-minilm provider) and a
FleetClient sending requests of BATCH texts with IN_FLIGHT requests outstanding. Direct:
the same provider class with the same config, ``embed_sync`` on the same batches, in this
process. Both compete for the same cores, so the corpus is cut into SEGMENTS and the two
take turns segment by segment: background load on the machine falls on both alike.

``python -m bench.embed_corpus [--sentences 50000]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    BOOTSTRAP,
    REDIS_URL,
    helper,
    namespace,
    print_table,
    python_module,
    run_case,
)
from producer_sdk import FleetClient
from providers.embeddings.local_minilm import MINILM_MODEL, LocalMiniLMConfig, LocalMiniLMEmbeddings

BATCH = 64  # texts per request (fleet) and per embed_sync call (direct)
IN_FLIGHT = 8  # fleet requests outstanding
SEGMENTS = 5
THREADS = 2  # onnxruntime intra-op threads, both sides (the machine has 2 cores)
PROVIDER_BATCH = 32  # texts per ONNX run inside the provider (its default), both sides
BATCHING = {"max_texts": 64, "max_tokens": 16_384, "max_wait_ms": 5.0}
WORKER_CONCURRENCY = 64
TARGET = 0.9

_SUBJECTS = ["the engineer", "a small team", "our new service", "the old database", "a curious cat",
             "the weather model", "every student", "the city council", "my neighbour",
             "the research group", "a busy restaurant", "the delivery robot", "the night shift",
             "an open-source project", "the museum guide", "a tired runner"]  # fmt: skip
_VERBS = ["quietly rebuilt", "carefully measured", "suddenly rejected", "happily shared",
          "slowly translated", "proudly announced", "barely finished", "often ignored",
          "eagerly tested", "patiently explained", "accidentally deleted",
          "finally approved"]  # fmt: skip
_OBJECTS = ["the quarterly report", "a dozen fresh ideas", "the broken login page",
            "three long letters", "the river map", "a surprising result", "the winter schedule",
            "an unusual request", "the last train ticket", "a pile of old photos",
            "the noisy sensor data", "the family recipe"]  # fmt: skip
_TAILS = ["before the morning meeting", "after a long and rainy weekend",
          "with help from two friends", "in the crowded station", "without asking anyone first",
          "during the power cut last night", "for the third time this year",
          "under a bright blue sky", "while the coffee was still hot",
          "because the deadline moved again"]  # fmt: skip


def sentences(count: int, seed: int = 2026) -> list[str]:
    """Deterministic, varied English sentences of about twelve words."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} "
        f"{rng.choice(_TAILS)}."
        for _ in range(count)
    ]


def _batches(texts: Sequence[str]) -> list[list[str]]:
    return [list(texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)]


def provider_config() -> dict[str, Any]:
    return {"threads": THREADS, "batch_size": PROVIDER_BATCH}


def direct(model: LocalMiniLMEmbeddings, texts: Sequence[str]) -> float:
    """Seconds to embed ``texts`` in this process, BATCH texts per call."""
    started = time.perf_counter()
    for batch in _batches(texts):
        model.embed_sync(batch)
    return time.perf_counter() - started


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


def worker_config(directory: Path) -> Path:
    config = directory / "embed-worker.toml"
    batching = ", ".join(f"{k} = {v}" for k, v in BATCHING.items())
    config.write_text(
        f'bootstrap_servers = "{BOOTSTRAP}"\n'
        f'redis_url = "{REDIS_URL}"\n'
        f"concurrency = {WORKER_CONCURRENCY}\n"
        f"embed_batching = {{ {batching} }}\n"
        f'embeddings = [{{ name = "local-minilm", config = {{ threads = {THREADS}, '
        f"batch_size = {PROVIDER_BATCH} }} }}]\n"
    )
    return config


async def run(count: int) -> dict[str, Any]:
    corpus = sentences(count)
    model = LocalMiniLMEmbeddings(LocalMiniLMConfig(threads=THREADS, batch_size=PROVIDER_BATCH))
    await model.load()
    ns = namespace("embed")
    step = -(-count // SEGMENTS)
    segments = [corpus[i : i + step] for i in range(0, count, step)]
    times = {"direct": 0.0, "fleet": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        config = worker_config(Path(tmp))
        command = python_module("workers.ops.cli", "worker", "embed", "--config", str(config))
        env = {"FLEET_NAMESPACE": ns, "OMP_NUM_THREADS": str(THREADS)}
        with helper(command, log_name=f"embed-{ns}", env=env, ready_line="worker ready"):
            async with FleetClient(BOOTSTRAP, namespace=ns) as client:
                warm = sentences(BATCH * IN_FLIGHT * 2, seed=1)
                await through_fleet(client, warm)  # warm-up: both sides, not counted
                direct(model, warm)
                for segment in segments:
                    times["direct"] += direct(model, segment)
                    times["fleet"] += await through_fleet(client, segment)
    await model.aclose()
    return {
        "sentences": count,
        "direct_per_s": count / times["direct"],
        "fleet_per_s": count / times["fleet"],
        "direct_s": times["direct"],
        "fleet_s": times["fleet"],
    }


PINNED = {
    "texts per request / per direct call": BATCH,
    "fleet requests in flight": IN_FLIGHT,
    "provider": f"local-minilm (int8 ONNX), threads={THREADS}, batch_size={PROVIDER_BATCH}",
    "worker embed_batching": BATCHING,
    "worker concurrency": WORKER_CONCURRENCY,
    "worker": "`fleet worker embed`, own process, idempotency ledger on (default)",
    "alternation": f"{SEGMENTS} segments, direct then fleet on each",
    "sentences": "synthetic, deterministic (seed 2026), about 12 words",
}


def report(result: dict[str, Any]) -> str:
    ratio = result["fleet_per_s"] / result["direct_per_s"]
    return print_table(
        f"corpus embedding, sentences/s (target fleet >= {TARGET:g} of direct)",
        ["sentences", "direct", "fleet", "fleet / direct", "target"],
        [
            [
                result["sentences"],
                result["direct_per_s"],
                result["fleet_per_s"],
                f"{ratio:.2f}",
                "pass" if ratio >= TARGET else "FAIL",
            ]
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sentences", type=int, default=50_000)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
    run_case("embed_corpus", PINNED, lambda: asyncio.run(run(args.sentences)), report)


if __name__ == "__main__":
    main()
