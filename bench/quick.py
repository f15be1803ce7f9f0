"""A quick look at what a job costs, run at the end of the test command: never a verdict.

Raw aiokafka against the fleet (ledger on) at 64 and at 1 in flight, with the CPU time per
job of every process, then a short corpus block (the fleet against the direct model call).
About a minute on 2 cores, counting the start of every process. It prints the ratios and
never fails on them: whatever goes wrong is a warning, and the exit status is 0. The full
cases, with their spread over repeated runs, are bench/run_all.sh's.

``python -m bench.quick`` (deploy/test.sh runs it last; FLEET_SKIP_QUICK_BENCH=1 skips it)
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import traceback
from typing import Any

from bench import embed_corpus
from bench.common import print_table, start_services
from bench.roundtrip import LevelResults, fleet, raw

# Jobs per level, 64 in flight first: the level the targets are set at.
JOBS = {64: 5000, 1: 300}
CORPUS_SENTENCES = 768
CORPUS_BLOCKS = 3
# The corpus block starts only if the round trips left it this much of the minute (they take
# about 8 s on an idle 2-core machine, the corpus block about 20 s); deploy/test.sh stops
# the whole bench at the minute's end.
BUDGET_S = 60.0
CORPUS_NEEDS_S = 35.0
PROCESSES = (("client", "client"), ("server", "worker / responder"), ("kafka", "Kafka"),
             ("redis", "Redis"))  # fmt: skip


async def round_trips() -> dict[str, LevelResults]:
    return {
        "raw aiokafka": await raw(1.0, JOBS),
        "fleet (ledger on)": await fleet(idempotency=True, scale=1.0, jobs=JOBS),
    }


def report_round_trips(results: dict[str, LevelResults]) -> None:
    raw_levels, fleet_levels = results["raw aiokafka"], results["fleet (ledger on)"]
    rows: list[list[object]] = []
    for n in JOBS:
        baseline, ours = raw_levels[n]["jobs_per_s"], fleet_levels[n]["jobs_per_s"]
        rows.append([f"jobs/s, {n} in flight", baseline, ours, f"{ours / baseline:.2f}x"])
    top = next(iter(JOBS))
    raw_cpu, fleet_cpu = raw_levels[top]["cpu_us_per_job"], fleet_levels[top]["cpu_us_per_job"]
    for key, name in PROCESSES:
        rows.append([f"CPU us/job at {top}, {name}", raw_cpu.get(key, 0.0),
                     fleet_cpu.get(key, 0.0), ""])  # fmt: skip
    raw_sum, fleet_sum = sum(raw_cpu.values()), sum(fleet_cpu.values())
    rows.append([f"CPU us/job at {top}, all", raw_sum, fleet_sum, f"{fleet_sum / raw_sum:.2f}x"])
    print_table(
        "quick: no-op round trip, fleet against raw aiokafka (target >= 0.8x at 64 in flight; "
        "CPU per job at most 100 us)",
        ["", "raw aiokafka", "fleet (ledger on)", "fleet / raw"],
        rows,
    )


def corpus() -> dict[str, Any]:
    """The one call into bench/embed_corpus.py: its interleaved blocks, short."""
    os.environ.setdefault("OMP_NUM_THREADS", str(embed_corpus.THREADS))
    return asyncio.run(embed_corpus.quick_ratio(CORPUS_SENTENCES, CORPUS_BLOCKS))


def report_corpus(result: dict[str, Any]) -> None:
    print_table(
        f"quick: corpus embedding of realistic prose, direct and fleet in interleaved blocks "
        f"(target fleet >= {embed_corpus.TARGET:g}x direct)",
        ["sentences", "direct /s", "fleet /s", "fleet / direct (median of blocks)", "min-max"],
        [[
            result["sentences"], result["direct_per_s"], result["fleet_per_s"],
            f"{result['ratio']:.2f}x", f"{result['ratio_min']:.2f}-{result['ratio_max']:.2f}",
        ]],
    )  # fmt: skip


def run() -> None:
    started = time.monotonic()
    start_services()
    report_round_trips(asyncio.run(round_trips()))
    left = BUDGET_S - (time.monotonic() - started)
    print(f"quick: round trips took {BUDGET_S - left:.0f} s", flush=True)
    if left < CORPUS_NEEDS_S:
        print(f"quick: corpus block skipped, {left:.0f} s of the minute left", flush=True)
    else:
        report_corpus(corpus())
    print(f"quick: {time.monotonic() - started:.0f} s in all", flush=True)


def main() -> None:
    try:
        run()
    except Exception:  # a look, not a test: nothing here may fail the test command
        print("quick: WARNING, the quick benchmark did not finish (not a failure):",
              file=sys.stderr, flush=True)  # fmt: skip
        traceback.print_exc(limit=4)
    sys.exit(0)


if __name__ == "__main__":
    main()
