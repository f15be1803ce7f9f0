"""Worker processes for tests that kill or stop them: the real `fleet worker` command."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import REPO, Infra


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        self.port = free_port()
        self.log = log
        self.health = f"http://{health_host}:{self.port}"
        env = {
            **os.environ,
            **infra.kafka_env(),
            "FLEET_REDIS_URL": infra.redis_url,
            "FLEET_NAMESPACE": namespace,
            **(env or {}),
        }
        command = [*(prefix or []), sys.executable, "-m", module, "worker", kind,
                   "--config", str(config), "--health-port", str(self.port)]  # fmt: skip
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    async def wait_ready(self, timeout_s: float = 90) -> None:
        async with httpx.AsyncClient() as http:
            for _ in range(int(timeout_s * 4)):
                if self.process.poll() is not None:
                    raise AssertionError(f"worker exited early:\n{self.log.read_text()[-3000:]}")
                try:
                    response = await http.get(f"{self.health}/readyz")
                    if response.status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.25)
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
