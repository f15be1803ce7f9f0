"""The batch-lane load of case 8 (bench/lanes.py), in a process of its own so that decoding
its replies never shares an event loop with the interactive requests being timed.

``embed``: ROWS synthetic sentences in requests of the coordinator's embed_chunk_rows, its
max_in_flight at once, on the embed batch lane; exits when every row is answered.
``generate``: closed-loop generate requests (SmolLM2, MAX_TOKENS each) on the generate batch
lane, max_in_flight at once, until SIGTERM. ``--lane interactive`` sends either load as
interactive requests instead (the baseline without lanes). Either prints READY_LINE once
its first answers are back (the load is under way) and writes its rate to ``--result``.

``python -m bench.lanes_load embed --namespace NS --rows 10000 --result FILE``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from pathlib import Path

from bench.common import BOOTSTRAP, READY_LINE
from bench.corpus import short_sentences
from contracts.names import LANES, Lane, as_lane
from producer_sdk import FleetClient
from providers.chat.local_llama import SMOLLM2_MODEL
from providers.embeddings.local_minilm import MINILM_MODEL
from workers.settings import BatchSettings

BATCH = BatchSettings()  # the coordinator's defaults: rows per request, requests in flight
MAX_TOKENS = 64
ANSWERED_BEFORE_READY = 2


class Progress:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.answered = 0
        self.units = 0  # rows or completion tokens

    def answer(self, units: int) -> None:
        self.answered += 1
        self.units += units
        if self.answered == ANSWERED_BEFORE_READY:
            print(READY_LINE, flush=True)

    def rate(self) -> float:
        return self.units / (time.perf_counter() - self.started)


async def embed_load(client: FleetClient, rows: int, lane: Lane, progress: Progress) -> None:
    texts = short_sentences(rows, seed=9)
    step = BATCH.embed_chunk_rows
    chunks = [texts[i : i + step] for i in range(0, rows, step)]

    async def caller() -> None:
        while chunks:
            chunk = chunks.pop()
            await client.embed(chunk, model=MINILM_MODEL, lane=lane, timeout_s=900)
            progress.answer(len(chunk))

    await asyncio.gather(*(caller() for _ in range(BATCH.max_in_flight)))


async def generate_load(
    client: FleetClient, lane: Lane, progress: Progress, stop: asyncio.Event
) -> None:
    async def caller(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            result = await client.generate(
                f"Write a short note about the number {n * 1000 + i}.",
                model=SMOLLM2_MODEL,
                max_tokens=MAX_TOKENS,
                temperature=0,
                lane=lane,
                timeout_s=900,
            )
            progress.answer(result.usage.completion_tokens)

    callers = [asyncio.create_task(caller(n)) for n in range(BATCH.max_in_flight)]
    await stop.wait()
    for task in callers:
        task.cancel()
    await asyncio.gather(*callers, return_exceptions=True)


async def main(kind: str, namespace: str, rows: int, lane: Lane) -> dict[str, float]:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    progress = Progress()
    async with FleetClient(BOOTSTRAP, namespace=namespace) as client:
        if kind == "embed":
            await embed_load(client, rows, lane, progress)
        else:
            await generate_load(client, lane, progress, stop)
    unit = "rows" if kind == "embed" else "tokens"
    return {f"{unit}_per_s": progress.rate(), unit: progress.units}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["embed", "generate"])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--lane", choices=LANES, default="batch", help="interactive: no lanes")
    args = parser.parse_args()
    rate = asyncio.run(main(args.kind, args.namespace, args.rows, as_lane(args.lane)))
    args.result.write_text(json.dumps(rate))
