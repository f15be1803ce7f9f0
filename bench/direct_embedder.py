"""The direct side of the embedding cases: the model called in a process of its own, as the
fleet's worker is, so that neither side shares a process (or its interpreter lock) with the
benchmark that times them.

The benchmark writes a block of texts as one JSON line; the process embeds it with
``embed_sync``, ``call_size`` texts a call, and answers the seconds that took. It starts with
``python -m bench.direct_embedder`` through ``DirectEmbedder``, never by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from types import TracebackType

from bench.common import READY_LINE, REPO, python_module

_LINE_LIMIT = 64 * 1024 * 1024  # one block of texts is one line


class DirectEmbedder:
    """``async with DirectEmbedder(...) as direct:`` starts the process (its model loads
    while the caller starts other things); ``await direct.ready()`` waits for it;
    ``await direct.embed(texts)`` is the seconds the process took for ``texts``."""

    def __init__(self, *, threads: int, provider_batch: int, call_size: int, log_name: str) -> None:
        self._command = python_module(
            "bench.direct_embedder",
            f"--threads={threads}",
            f"--provider-batch={provider_batch}",
            f"--call-size={call_size}",
        )
        self._env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        log_dir = REPO / ".fleet" / "logs" / "bench"
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log = log_dir / f"{log_name}.log"
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        return self._running().pid

    async def __aenter__(self) -> DirectEmbedder:
        with self._log.open("a") as log:
            self._process = await asyncio.create_subprocess_exec(
                *self._command,
                cwd=REPO,
                env=self._env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                limit=_LINE_LIMIT,
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process = self._running()
        assert process.stdin is not None
        process.stdin.close()  # end of input: the process leaves its loop and exits
        try:
            await asyncio.wait_for(process.wait(), timeout=30)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def ready(self, timeout_s: float = 120.0) -> None:
        line = await asyncio.wait_for(self._line(), timeout=timeout_s)
        if line != READY_LINE:
            raise RuntimeError(f"direct embedder did not start (see {self._log}): {line!r}")

    async def embed(self, texts: Sequence[str]) -> float:
        process = self._running()
        assert process.stdin is not None
        process.stdin.write(json.dumps(list(texts)).encode() + b"\n")
        await process.stdin.drain()
        return float(await self._line())

    def _running(self) -> asyncio.subprocess.Process:
        assert self._process is not None, "use DirectEmbedder in ``async with``"
        return self._process

    async def _line(self) -> str:
        stdout = self._running().stdout
        assert stdout is not None
        line = await stdout.readline()
        if not line:
            raise RuntimeError(f"direct embedder exited (see {self._log})")
        return line.decode().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--provider-batch", type=int, required=True)
    parser.add_argument("--call-size", type=int, required=True)
    args = parser.parse_args()
    # Imported here: the parent process needs none of the model's libraries.
    from providers.embeddings.local_minilm import LocalMiniLMConfig, LocalMiniLMEmbeddings

    model = LocalMiniLMEmbeddings(
        LocalMiniLMConfig(threads=args.threads, batch_size=args.provider_batch)
    )
    asyncio.run(model.load())
    print(READY_LINE, flush=True)
    for line in sys.stdin:
        texts: list[str] = json.loads(line)
        started = time.perf_counter()
        for start in range(0, len(texts), args.call_size):
            model.embed_sync(texts[start : start + args.call_size])
        print(time.perf_counter() - started, flush=True)


if __name__ == "__main__":
    main()
