"""Worker processes for tests that kill or stop them: the real `fleet worker` command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import REPO, Infra
from workers.health_port import read_port_file

# How often a starting worker is asked whether it is ready: a file read, then a local
# HTTP request; a quarter second cost each start 0.125 s on average.
READY_POLL_S = 0.05


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports the OS calls free now, for services that cannot bind port 0
    and report back (Redis, Kafka): held open together so that none repeats. Another process
    may take one before the service binds it, so a start on them must be retried."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def free_port() -> int:
    (port,) = free_ports(1)
    return port


class WorkerProcess:
    def __init__(
        self,
        kind: str,
        infra: Infra,
        namespace: str,
        config: Path,
        log: Path,
        module: str = "workers.ops.cli",  # a module that runs workers.ops.cli's main
        env: dict[str, str] | None = None,  # variables of its own, set last
        prefix: list[str] | None = None,  # run through this (["ip", "netns", "exec", ns])
        health_host: str = "127.0.0.1",  # where its health port is reached from here
    ) -> None:
        self.log = log
        # Port 0: the worker binds one the OS picks and writes it here once it serves.
        self.port_file = log.with_name(f"{log.name}.port")
        self.port_file.unlink(missing_ok=True)
        self._health_host = health_host
        env = {
            **os.environ,
            **infra.kafka_env(),
            "FLEET_REDIS_URL": infra.redis_url,
            "FLEET_NAMESPACE": namespace,
            **(env or {}),
        }
        command = [*(prefix or []), sys.executable, "-m", module, "worker", kind,
                   "--config", str(config), "--health-port", "0",
                   "--health-port-file", str(self.port_file)]  # fmt: skip
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def port(self) -> int | None:
        """The health port, once the worker serves on it."""
        return read_port_file(self.port_file)

    @property
    def health(self) -> str:
        port = self.port
        assert port is not None, f"the worker has not written {self.port_file} yet"
        return f"http://{self._health_host}:{port}"

    async def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"worker exited early:\n{self.log.read_text()[-3000:]}")
                if self.port is not None:  # None: not serving yet
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get(f"{self.health}/readyz")).status_code == 200:
                            return
                await asyncio.sleep(READY_POLL_S)
        raise AssertionError(
            f"worker not ready after {timeout_s}s:\n{self.log.read_text()[-3000:]}"
        )

    async def metric(self, name: str) -> float:
        """Sum of a metric's samples from this worker's /metrics."""
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{self.health}/metrics")).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> int:
        return self.process.wait(timeout=timeout_s)

    def ensure_stopped(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
