"""`fleet demo` and `fleet dev` watch their worker processes: a worker that dies (here of
SIGSEGV, as a native crash in a model library would) is reported with its kind, signal and
log tail; the demo stops at once, `fleet dev` starts the worker again."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, Infra

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.model, pytest.mark.slow]


class FleetCommand:
    """A running `fleet ...` process whose output is collected line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.lines.append(line.decode(errors="replace").rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def until(self, condition: Callable[[], bool], timeout_s: float) -> float:
        """Seconds it took for ``condition`` to hold."""
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > timeout_s:
                raise AssertionError(f"not seen within {timeout_s}s; output:\n{self.output}")
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    def worker_pids(self, kind: str) -> list[int]:
        """Live `fleet worker KIND` processes started by this command."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == self.process.pid and [b"worker", kind.encode()] == cmdline[3:5]:
                pids.append(int(entry.name))
        return pids


Start = Callable[..., Awaitable[FleetCommand]]


@pytest.fixture
async def fleet_command(infra: Infra, namespace: str) -> AsyncIterator[Start]:
    started: list[FleetCommand] = []
    env = {
        **os.environ,
        **infra.kafka_env(),
        "FLEET_REDIS_URL": infra.redis_url,
        "FLEET_NAMESPACE": namespace,
    }

    async def start(*args: str) -> FleetCommand:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers.ops.cli", *args, cwd=REPO, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        command = FleetCommand(process)
        started.append(command)
        return command

    yield start
    for command in started:
        if command.process.returncode is None:
            command.process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(command.process.wait(), timeout=60)
            except TimeoutError:
                command.process.kill()
                await command.process.wait()


async def test_the_demo_stops_at_once_when_a_worker_dies(
    fleet_command: Start,
) -> None:
    demo = await fleet_command(
        "demo", "Write a long story about a lighthouse.", "--max-tokens", "2000"
    )
    await demo.until(lambda: "== generate" in demo.output, timeout_s=120)
    (pid,) = demo.worker_pids("generate")
    os.kill(pid, signal.SIGSEGV)
    killed = time.monotonic()
    await asyncio.wait_for(demo.process.wait(), timeout=60)
    ended_after = time.monotonic() - killed

    assert demo.process.returncode != 0
    assert "the generate worker exited with signal SIGSEGV" in demo.output
    assert "worker-generate.log" in demo.output  # the log's tail follows
    assert ended_after < 5, f"the demo took {ended_after:.1f}s to notice"


async def test_fleet_dev_restarts_a_worker_that_died(
    fleet_command: Start,
) -> None:
    dev = await fleet_command("dev", "--kinds", "embed")
    await dev.until(lambda: "all workers ready" in dev.output, timeout_s=120)
    assert len(_addresses(dev, "embed")) == 1, dev.output
    (first,) = dev.worker_pids("embed")
    os.kill(first, signal.SIGSEGV)
    noticed = await dev.until(lambda: "restarting it in 1s" in dev.output, timeout_s=30)
    assert "the embed worker exited with signal SIGSEGV" in dev.output
    assert noticed < 5, f"fleet dev took {noticed:.1f}s to notice"
    await dev.until(lambda: len(dev.worker_pids("embed")) == 1, timeout_s=30)
    (second,) = dev.worker_pids("embed")
    assert second != first
    # The new process's port, which the OS picked again, is told once it serves.
    await dev.until(lambda: len(_addresses(dev, "embed")) == 2, timeout_s=60)
    assert dev.process.returncode is None  # the fleet itself carries on

    dev.process.terminate()  # as a process manager stops it: the workers stop with it
    await asyncio.wait_for(dev.process.wait(), timeout=60)
    with pytest.raises(ProcessLookupError):
        os.kill(second, 0)  # the worker is gone, not orphaned


def _addresses(dev: FleetCommand, kind: str) -> list[str]:
    """The metrics addresses `fleet dev` printed for ``kind``, in order."""
    prefix = f"[fleet] {kind}: http://127.0.0.1:"
    return [line.split(",")[0] for line in dev.lines if line.startswith(prefix)]
