"""A generate worker process whose chat provider does no work: the fleet's own cost alone.

``python -m bench.noop_worker --namespace NS [--no-idempotency] [--concurrency 64]``
prints ``BENCH-READY`` once it has joined its consumer group, and stops on SIGTERM.
With ``--chat stamp`` the one piece it yields carries CLOCK_MONOTONIC nanoseconds (when
the provider was called and when it yielded), which the SDK side compares with its own
receipt time on the same machine (bench/ttfc.py).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import AsyncIterator

from bench.common import BOOTSTRAP, READY_LINE, REDIS_URL
from contracts import ChatMessage, Usage
from providers.chat import ChatCapabilities, ChatDone, ChatEvent, ChatParams, TextPiece
from providers.router import ModelRouter
from transport.connection import PLAINTEXT
from workers import Worker, WorkerSettings
from workers.handlers.generate import GenerateHandler
from workers.ops.local_kafka import local_secured_listeners

NOOP_MODEL = "noop"


class NoopChat:
    """Instantly yields one short piece and ChatDone."""

    name = "noop"

    def __init__(self, *, stamp: bool = False) -> None:
        self._stamp = stamp

    @property
    def capabilities(self) -> ChatCapabilities:
        return ChatCapabilities(models=(NOOP_MODEL,))

    async def stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatEvent]:
        if self._stamp:
            called = time.monotonic_ns()
            yield TextPiece(f"{called} {time.monotonic_ns()}")
        else:
            yield TextPiece("ok")
        yield ChatDone(finish_reason="stop", usage=Usage(prompt_tokens=1, completion_tokens=1))

    async def load(self) -> None:
        return None

    async def health(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


def settings(
    ns: str, *, idempotency: bool, concurrency: int, partitions: int, sasl: bool = False
) -> WorkerSettings:
    """The worker's settings; ``sasl``: through the local broker's SASL_SSL listener."""
    listeners = local_secured_listeners() if sasl else None
    return WorkerSettings(
        bootstrap_servers=listeners.sasl_ssl if listeners else BOOTSTRAP,
        kafka=listeners.sasl() if listeners else PLAINTEXT,
        redis_url=REDIS_URL,
        namespace=ns,
        idempotency=idempotency,
        concurrency=concurrency,
        partitions=partitions,
        memory=None,
    )


async def serve(
    ns: str, *, idempotency: bool, concurrency: int, partitions: int, stamp: bool, sasl: bool
) -> None:
    worker_settings = settings(
        ns, idempotency=idempotency, concurrency=concurrency, partitions=partitions, sasl=sasl
    )
    handler = GenerateHandler(ModelRouter("chat", [NoopChat(stamp=stamp)]), memory=None)
    worker = Worker("generate", worker_settings, handler)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    task = asyncio.create_task(worker.run())
    ready = asyncio.create_task(worker.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if ready.done():
        print(READY_LINE, flush=True)
    await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--no-idempotency", action="store_true")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--chat", choices=["noop", "stamp"], default="noop")
    parser.add_argument("--sasl", action="store_true", help="through the SASL_SSL listener")
    parser.add_argument("--profile", help="write a pyinstrument text profile to this file")
    args = parser.parse_args()
    profiler = None
    if args.profile:
        from pyinstrument import Profiler  # optional: pip install pyinstrument

        profiler = Profiler(async_mode="disabled")
        profiler.start()
    asyncio.run(
        serve(
            args.namespace,
            idempotency=not args.no_idempotency,
            concurrency=args.concurrency,
            partitions=args.partitions,
            stamp=args.chat == "stamp",
            sasl=args.sasl,
        )
    )
    if profiler is not None:
        profiler.stop()
        with open(args.profile, "w") as out:
            out.write(profiler.output_text(unicode=False, show_all=False))


if __name__ == "__main__":
    main()
