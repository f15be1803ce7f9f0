"""The job runner's own cost per job, in one process with no broker: a no-op generate job
(one piece) through the whole chain of links into an in-memory publisher.

    .venv/bin/python -m bench.runner_cost [jobs] [--ledger]
    valgrind --tool=callgrind .venv/bin/python -m bench.runner_cost 2000   # instructions

With ``--ledger`` the chain claims and ends each job in the once-only ledger on the local
Redis, and runs 64 jobs at a time (distinct request ids), as a worker at 64 in flight does,
so the ledger's calls of one loop iteration share their script calls.

Wall-clock figures on a shared 2-core machine move by 30% from run to run; the instruction
count under callgrind repeats, which is what to compare across versions of the runner.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
import uuid
from typing import Any

from aiokafka.structs import ConsumerRecord

from bench.common import REDIS_URL
from contracts import ChatMessage, GenerateRequest
from contracts.codec import encode
from contracts.envelope import ReplyAddress
from providers.redis_client import connect_redis
from providers.router import ModelRouter
from tests.integration.scripted_chat import ScriptedChat
from tests.unit.memory_publisher import MemoryPublisher
from workers.dead_letter import DeadLetters
from workers.handlers.generate import GenerateHandler
from workers.idempotency import JobLedger
from workers.metrics import WorkerMetrics
from workers.runtime.runner import JobRunner


class _CountingPublisher(MemoryPublisher):
    """Counts instead of keeping: a long run must not grow a list."""

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        future = await super().send(topic, *args, **kwargs)
        self.sent.clear()
        return future


IN_FLIGHT = 64


async def main(jobs: int, with_ledger: bool) -> None:
    publisher = _CountingPublisher()
    metrics = WorkerMetrics("generate")
    redis = connect_redis(REDIS_URL) if with_ledger else None
    ledger = JobLedger(redis, f"bench-{uuid.uuid4().hex[:8]}") if redis is not None else None
    runner = JobRunner(
        kind="generate",
        handler=GenerateHandler(ModelRouter("chat", [ScriptedChat(pieces=("x",))])),
        producer=publisher,
        dead_letters=DeadLetters(publisher, "dead", metrics),
        max_payload_bytes=100_000,
        metrics=metrics,
        ledger=ledger,
    )
    ids = itertools.count()

    def record() -> ConsumerRecord[bytes, bytes]:
        request = GenerateRequest(
            request_id=f"r{next(ids)}" if with_ledger else "r1",
            model="scripted-model",
            messages=[ChatMessage(role="user", content="hi")],
            reply_to=ReplyAddress(topic="replies", partition=0),
        )
        value = encode(request)
        return ConsumerRecord("requests", 0, 1, 0, 0, b"k", value, None, 1, len(value), [])

    async def run(count: int) -> float:
        """Run ``count`` jobs; when the clock started."""
        if not with_ledger:
            one = record()
            started = time.perf_counter()
            for _ in range(count):
                await runner.run(one)
            return started
        records = [record() for _ in range(count)]  # built before the clock starts
        started = time.perf_counter()
        for i in range(0, count - IN_FLIGHT + 1, IN_FLIGHT):
            await asyncio.gather(*(runner.run(r) for r in records[i : i + IN_FLIGHT]))
        return started

    await run(jobs // 5)  # warm-up
    best = float("inf")
    for _ in range(5):
        started = await run(jobs)
        best = min(best, (time.perf_counter() - started) / jobs)
    print(f"{best * 1e6:.1f} us per job (best of 5 rounds of {jobs})")
    if redis is not None:
        await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("jobs", type=int, nargs="?", default=20_000)
    parser.add_argument("--ledger", action="store_true", help="with the ledger on local Redis")
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.ledger))
