"""The job runner's own cost per job, in one process with no broker: a no-op generate job
(one piece) through the whole chain of links into an in-memory publisher.

    .venv/bin/python -m bench.runner_cost [jobs]
    valgrind --tool=callgrind .venv/bin/python -m bench.runner_cost 2000   # instructions

Wall-clock figures on a shared 2-core machine move by 30% from run to run; the instruction
count under callgrind repeats, which is what to compare across versions of the runner.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from aiokafka.structs import ConsumerRecord

from contracts import ChatMessage, GenerateRequest
from contracts.codec import encode
from contracts.envelope import ReplyAddress
from providers.router import ModelRouter
from tests.integration.scripted_chat import ScriptedChat
from tests.unit.memory_publisher import MemoryPublisher
from workers.dead_letter import DeadLetters
from workers.handlers.generate import GenerateHandler
from workers.metrics import WorkerMetrics
from workers.runtime.runner import JobRunner


class _CountingPublisher(MemoryPublisher):
    """Counts instead of keeping: a long run must not grow a list."""

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        future = await super().send(topic, *args, **kwargs)
        self.sent.clear()
        return future


async def main(jobs: int) -> None:
    publisher = _CountingPublisher()
    metrics = WorkerMetrics("generate")
    runner = JobRunner(
        kind="generate",
        handler=GenerateHandler(ModelRouter("chat", [ScriptedChat(pieces=("x",))])),
        producer=publisher,
        dead_letters=DeadLetters(publisher, "dead", metrics),
        max_payload_bytes=100_000,
        metrics=metrics,
    )
    request = GenerateRequest(
        request_id="r1",
        model="scripted-model",
        messages=[ChatMessage(role="user", content="hi")],
        reply_to=ReplyAddress(topic="replies", partition=0),
    )
    value = encode(request)
    record = ConsumerRecord("requests", 0, 1, 0, 0, b"k", value, None, 1, len(value), [])
    for _ in range(jobs // 5):  # warm-up
        await runner.run(record)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(jobs):
            await runner.run(record)
        best = min(best, (time.perf_counter() - started) / jobs)
    print(f"{best * 1e6:.1f} us per job (best of 5 rounds of {jobs})")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
