"""Case 9: the no-op round trip with 1, 2, 4, ... worker processes in one consumer group.

Case 1's fleet (ledger on, bench/noop_worker.py) with N worker processes in one group on
one machine, the request topic cut into enough partitions for the most of them; jobs/s at
64 and 256 in flight for each N, and what each step bought per process it added. Baseline:
case 1's raw aiokafka round trip (one responder process) at the same levels, in the same
run. The client is one process throughout: its CPU per job is printed, since on a machine
with many cores it is the next thing to run out.

``python -m bench.scaling [--workers 1,2,4] [--in-flight 64,256] [--scale 0.5] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

from bench.common import add_repeat_option, print_table, run_case
from bench.roundtrip import PINNED as ROUNDTRIP_PINNED
from bench.roundtrip import WORKER_CONCURRENCY, LevelResults, fleet, raw

WORKERS = (1, 2, 4)
LEVELS = (64, 256)
MIN_PARTITIONS = 8
JOBS_PER_LEVEL = 6000  # times --scale; at least ROUNDS per caller at high levels
ROUNDS = 40

RAW = "raw aiokafka"
# {"raw aiokafka": LevelResults, "fleet": {worker processes: LevelResults}}
Results = dict[str, Any]


def jobs_per_level(levels: Sequence[int]) -> dict[int, int]:
    return {n: max(JOBS_PER_LEVEL, ROUNDS * n) for n in levels}


def partitions_for(workers: Sequence[int]) -> int:
    """One count for every step, so that only the number of processes changes."""
    return max(MIN_PARTITIONS, *workers)


async def run(workers: Sequence[int], levels: Sequence[int], scale: float) -> Results:
    jobs = jobs_per_level(levels)
    fleets: dict[int, LevelResults] = {}
    baseline = await raw(scale, jobs)
    for n in workers:
        fleets[n] = await fleet(
            idempotency=True,
            scale=scale,
            workers=n,
            partitions=partitions_for(workers),
            jobs=jobs,
        )
    return {RAW: baseline, "fleet": fleets}


def report(results: Results) -> str:
    baseline: LevelResults = results[RAW]
    fleets: dict[int, LevelResults] = results["fleet"]
    levels = list(baseline)
    top, first = levels[0], next(iter(fleets))
    rows: list[list[object]] = [
        [RAW + " (1 responder)", *(x for n in levels for x in (baseline[n]["jobs_per_s"], "")),
         "", _cpu(baseline[top])]
    ]  # fmt: skip
    previous: tuple[int, LevelResults] | None = None
    for count, by_level in fleets.items():
        row: list[object] = [f"fleet, {_workers(count)}"]
        for n in levels:
            rate = by_level[n]["jobs_per_s"]
            row.append(f"{rate:,.0f} ({rate / baseline[n]['jobs_per_s']:.2f}x)")
            if previous is None:
                row.append("")
            else:
                added = (rate - previous[1][n]["jobs_per_s"]) / (count - previous[0])
                row.append(f"{added:+,.0f}")
        row.append(f"{by_level[top]['jobs_per_s'] / fleets[first][top]['jobs_per_s']:.2f}x")
        row.append(_cpu(by_level[top]))
        rows.append(row)
        previous = (count, by_level)
    return print_table(
        "no-op round trip with N worker processes in one group, jobs/s "
        "(ratio to raw aiokafka in the same run; per process added: the step's gain)",
        [
            "variant",
            *(h for n in levels for h in (f"{n} in flight", f"per process added at {n}")),
            f"x {_workers(first)} at {top}",
            f"CPU us/job at {top}: client / workers / Kafka / Redis",
        ],
        rows,
    )


def _workers(count: int) -> str:
    return f"{count} worker{'s' if count > 1 else ''}"


def _cpu(level: dict[str, Any]) -> str:
    cpu = level["cpu_us_per_job"]
    return " / ".join(f"{cpu.get(name, 0):.0f}" for name in ("client", "server", "kafka", "redis"))


def pinned(workers: Sequence[int], levels: Sequence[int]) -> dict[str, Any]:
    return {
        "worker processes (one group)": tuple(workers),
        "levels (jobs in flight)": tuple(levels),
        "jobs per level": jobs_per_level(levels),
        "request topic partitions": partitions_for(workers),
        "worker concurrency (each process)": WORKER_CONCURRENCY,
        "warm-up jobs per variant": ROUNDTRIP_PINNED["warm-up jobs per case"],
        "producers (SDK, worker, raw)": ROUNDTRIP_PINNED["producers (SDK, worker, raw)"],
        "ledger": "on (the default)",
        "client": "one FleetClient in this process",
        "raw baseline": "case 1's requester and one responder process",
    }


def _counts(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=_counts, default=WORKERS, help="e.g. 1,2,4,8,16")
    parser.add_argument("--in-flight", type=_counts, default=LEVELS, help="e.g. 64,256")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the job counts")
    add_repeat_option(parser)
    args = parser.parse_args()
    run_case(
        "scaling",
        pinned(args.workers, args.in_flight),
        lambda: asyncio.run(run(args.workers, args.in_flight, args.scale)),
        report,
        as_json=lambda results: {
            RAW: {str(n): r for n, r in results[RAW].items()},
            "fleet": {
                str(count): {str(n): r for n, r in by_level.items()}
                for count, by_level in results["fleet"].items()
            },
        },
        scale=args.scale,
        repeat=args.repeat,
    )


if __name__ == "__main__":
    main()
