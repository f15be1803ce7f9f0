"""The local chat engine alone: time to first token and tokens/s of `local-llama` (SmolLM2,
llama.cpp through cyllama) on this machine, greedy, a new prompt each run so that no
prompt cache helps. Used for docs/decisions/0009-local-chat-engine.md.

    .venv/bin/python -m bench.local_chat [--runs 6] [--max-tokens 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from contracts import ChatMessage
from providers.chat import ChatDone, ChatParams, TextPiece, chat_providers
from providers.chat.local_llama import SMOLLM2_MODEL

TOPICS = (
    "the sky blue",
    "the sea salty",
    "grass green",
    "snow white",
    "the sun hot",
    "ice slippery",
)


async def main(runs: int, max_tokens: int) -> None:
    chat = chat_providers.create("local-llama", {})
    started = time.perf_counter()
    await chat.load()
    print(f"load and self-check: {time.perf_counter() - started:.2f} s")
    params = ChatParams(model=SMOLLM2_MODEL, max_tokens=max_tokens, temperature=0)
    firsts, rates = [], []
    for run in range(runs):
        prompt = f"Why is {TOPICS[run % len(TOPICS)]}?"
        started = time.perf_counter()
        first = 0.0
        async for event in chat.stream_chat([ChatMessage(role="user", content=prompt)], params):
            if isinstance(event, TextPiece) and not first:
                first = time.perf_counter() - started
            elif isinstance(event, ChatDone):
                total = time.perf_counter() - started
                rate = (event.usage.completion_tokens - 1) / (total - first)
                firsts.append(first)
                rates.append(rate)
                print(f"{prompt!r}: first token {first * 1000:.0f} ms, "
                      f"{event.usage.completion_tokens} tokens, {rate:.1f} tokens/s")  # fmt: skip
    await chat.aclose()
    print(f"median: first token {statistics.median(firsts) * 1000:.0f} ms, "
          f"{statistics.median(rates):.1f} tokens/s")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.max_tokens))
