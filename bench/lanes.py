"""Case 8: interactive latency while a batch runs on the batch lane (priority lanes).

Two worker processes, `fleet worker embed` (MiniLM) and `fleet worker generate` (SmolLM2),
one model thread each (two models on two cores). Interactive requests are timed one at a
time from this process: an embed of one short text, and a generate of a few tokens. They
are timed three ways: idle; while a batch of ROWS rows runs on the embed batch lane; and
while closed-loop generate requests run on the generate batch lane. The load runs in its
own process (bench/lanes_load.py) with the batch coordinator's request size and requests in
flight; a sample counts only if the load was still running when it ended. Each p99 is
reported as a ratio to the idle p99 of the same kind (the target: within 2x). The baseline
without lanes sends the same loads as interactive requests.

``python -m bench.lanes [--scale 1.0]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.common import (
    BOOTSTRAP,
    REDIS_URL,
    Helper,
    helper,
    namespace,
    percentile,
    print_table,
    python_module,
    run_case,
)
from bench.lanes_load import BATCH, MAX_TOKENS
from contracts.names import Lane
from producer_sdk import FleetClient
from providers.chat.local_llama import SMOLLM2_MODEL
from providers.embeddings.local_minilm import MINILM_MODEL

ROWS = 10_000
EMBED_SAMPLES = 200
GENERATE_SAMPLES = 60
PROBE_TOKENS = 8
WARMUP = 10
TARGET_RATIO = 2.0
# Each load: which kind it sends, on which lane. The last two are the baseline without
# lanes: the same load sent as interactive requests, where the probes queue behind it.
LOADS: dict[str, tuple[str, Lane] | None] = {
    "idle": None,
    "embed batch": ("embed", "batch"),
    "generate batch": ("generate", "batch"),
    "embed batch, sent interactive": ("embed", "interactive"),
    "generate batch, sent interactive": ("generate", "interactive"),
}
# Probes behind a load without lanes take seconds each: this share of the samples.
WITHOUT_LANES_SHARE = 0.1


def worker_config(directory: Path) -> Path:
    """Both workers' settings: the kinds' default concurrency (embed 64 + 8 batch, generate
    4 + 2 batch) and lanes, one model thread each."""
    config = directory / "lanes.toml"
    config.write_text(
        f'bootstrap_servers = "{BOOTSTRAP}"\n'
        f'redis_url = "{REDIS_URL}"\n'
        'embeddings = [{ name = "local-minilm", config = { threads = 1 } }]\n'
        'chat = [{ name = "local-llama", config = { n_threads = 1 } }]\n'
    )
    return config


Probe = Callable[[FleetClient, int], Awaitable[None]]


async def probe_embed(client: FleetClient, i: int) -> None:
    await client.embed(f"Where is my order number {i}?", model=MINILM_MODEL, timeout_s=120)


async def probe_generate(client: FleetClient, i: int) -> None:
    await client.generate(
        f"Say hello to visitor {i}.",
        model=SMOLLM2_MODEL,
        max_tokens=PROBE_TOKENS,
        temperature=0,
        timeout_s=120,
    )


async def sample(client: FleetClient, probe: Probe, count: int, load: Helper | None) -> list[float]:
    """Latencies (ms) of ``count`` probes one at a time, only those that ended while
    ``load`` still ran (all of them without a load)."""
    latencies: list[float] = []
    for i in range(count):
        started = time.perf_counter()
        await probe(client, i)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if load is not None and load.process.poll() is not None:
            break  # the load had ended: this sample and any later are not under load
        latencies.append(elapsed_ms)
    return latencies


def _stats(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"samples": 0}
    return {
        "samples": len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "first_ms": latencies[0],
        "slowest_ms": sorted(latencies)[-5:],  # type: ignore[dict-item]
    }


async def run(scale: float) -> dict[str, Any]:
    ns = namespace("lanes")
    rows = max(int(ROWS * scale), BATCH.embed_chunk_rows * BATCH.max_in_flight)
    counts = {"embed": max(int(EMBED_SAMPLES * scale), 20), "generate": max(
        int(GENERATE_SAMPLES * scale), 10)}  # fmt: skip
    probes: dict[str, Probe] = {"embed": probe_embed, "generate": probe_generate}
    results: dict[str, Any] = {"rows": rows, "latency": {}, "load": {}}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        config = worker_config(home)
        env = {"FLEET_NAMESPACE": ns, "OMP_NUM_THREADS": "1"}
        workers = [
            python_module("workers.ops.cli", "worker", kind, "--config", str(config))
            for kind in ("embed", "generate")
        ]
        with (
            helper(workers[0], log_name=f"lanes-embed-{ns}", env=env, ready_line="worker ready"),
            helper(workers[1], log_name=f"lanes-gen-{ns}", env=env, ready_line="worker ready"),
        ):
            async with FleetClient(BOOTSTRAP, namespace=ns) as client:
                for probe in probes.values():
                    await sample(client, probe, WARMUP, None)
                for load_name in LOADS:
                    results["latency"][load_name] = await _under_load(
                        client, load_name, ns, rows, home, probes, counts, results["load"]
                    )
    return results


async def _under_load(
    client: FleetClient,
    load_name: str,
    ns: str,
    rows: int,
    home: Path,
    probes: dict[str, Probe],
    counts: dict[str, int],
    load_rates: dict[str, Any],
) -> dict[str, dict[str, float]]:
    load_spec = LOADS[load_name]
    if load_spec is None:
        return {k: _stats(await sample(client, p, counts[k], None)) for k, p in probes.items()}
    kind, lane = load_spec
    share = 1.0 if lane == "batch" else WITHOUT_LANES_SHARE
    result = home / f"load-{kind}-{lane}.json"
    command = python_module(
        "bench.lanes_load", kind, "--namespace", ns, "--rows", str(rows), "--lane", lane,
        "--result", str(result),
    )  # fmt: skip
    stats: dict[str, dict[str, float]] = {}
    with helper(command, log_name=f"lanes-load-{kind}-{lane}-{ns}") as load:
        for probe_kind, probe in probes.items():
            count = max(int(counts[probe_kind] * share), 3)
            stats[probe_kind] = _stats(await sample(client, probe, count, load))
        if kind == "generate":
            load.stop()  # a closed loop: it ends when told
        else:  # the embed batch runs to its last row
            await asyncio.to_thread(load.process.wait)
    load_rates[load_name] = json.loads(result.read_text())
    return stats


PINNED = {
    "workers": "`fleet worker embed` and `fleet worker generate`, own processes, one model "
    "thread each (threads = 1, n_threads = 1), the kinds' default concurrency and lanes",
    "interactive probes": f"one at a time from the bench process: embed of one short text; "
    f"generate of {PROBE_TOKENS} tokens (SmolLM2, greedy)",
    "embed batch load": f"{ROWS:,} rows x scale, {BATCH.embed_chunk_rows} rows per request, "
    f"{BATCH.max_in_flight} in flight (the coordinator's defaults), own process",
    "generate batch load": f"closed loop, {BATCH.max_in_flight} in flight, "
    f"{MAX_TOKENS} tokens each, own process",
    "samples": f"embed {EMBED_SAMPLES}, generate {GENERATE_SAMPLES} (x scale) per load; "
    "under a load, only those that ended while it ran",
    "baseline without lanes": f"the same loads sent as interactive requests, "
    f"{WITHOUT_LANES_SHARE:g} of the samples (each waits behind the load)",
}


def report(results: dict[str, Any]) -> str:
    rows = []
    latency = results["latency"]
    for kind in ("embed", "generate"):
        idle = latency["idle"][kind]
        for load_name in LOADS:
            s = latency[load_name][kind]
            if not s.get("samples") or not idle.get("samples"):
                rows.append([kind, load_name, 0, "-", "-", "-", "-", "-", "no samples"])
                continue
            ratio = s["p99_ms"] / idle["p99_ms"]
            verdict = "pass" if ratio <= TARGET_RATIO else "FAIL"
            rows.append([kind, load_name, int(s["samples"]), s["p50_ms"], s["p99_ms"],
                         s["max_ms"], f"{s['p50_ms'] / idle['p50_ms']:.2f}", f"{ratio:.2f}",
                         verdict])  # fmt: skip
    loads = ", ".join(
        f"{name}: " + ", ".join(f"{k} {v:,.0f}" for k, v in rate.items())
        for name, rate in results["load"].items()
    )
    return print_table(
        f"interactive latency, ms, under batch-lane load (target p99 <= {TARGET_RATIO:g}x "
        f"the idle p99; load: {loads})",
        [
            "interactive",
            "load",
            "samples",
            "p50",
            "p99",
            "max",
            "p50 / idle p50",
            "p99 / idle p99",
            "target",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="rows and samples")
    args = parser.parse_args()
    run_case("lanes", PINNED, lambda: asyncio.run(run(args.scale)), report)


if __name__ == "__main__":
    main()
