"""A streamed answer printed as it arrives, for `fleet chat` and the demo."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from typing import TextIO

from producer_sdk import GenerateEvent, GenerateResult, StreamRestarted, TextDelta


async def print_stream(events: AsyncIterator[GenerateEvent], summary: TextIO = sys.stdout) -> str:
    """Text as it streams, a note when a worker restarted the answer, then one summary line
    (model, tokens, finish reason, time to the first chunk and in all) on ``summary``; the
    answer's text is returned (the demo speaks it)."""
    started = time.perf_counter()
    first: float | None = None
    answer = ""
    async for event in events:
        if isinstance(event, TextDelta):
            first = first if first is not None else time.perf_counter() - started
            print(event.text, end="", flush=True)
        elif isinstance(event, StreamRestarted):
            print("\n[a worker restarted this answer]\n", flush=True)
        elif isinstance(event, GenerateResult):
            answer = event.text
            total = time.perf_counter() - started
            print(
                f"\n\n[{event.model}: {event.usage.completion_tokens} tokens, "
                f"finish={event.finish_reason}, first chunk {first or total:.2f}s, "
                f"total {total:.2f}s]\n",
                file=summary,
            )
    return answer
