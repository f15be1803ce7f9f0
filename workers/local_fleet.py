"""Worker processes on this machine, for `fleet dev` and `fleet demo`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from subprocess import Popen

import httpx

LOG_DIR = Path(os.environ.get("FLEET_HOME", ".fleet")) / "logs"


class LocalWorker:
    """One `fleet worker <kind>` process with its health endpoint on ``port``."""

    def __init__(
        self,
        kind: str,
        port: int,
        config: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.port = port
        self.log_path = LOG_DIR / f"worker-{kind}.log"
        command = [sys.executable, "-m", "workers.cli", "worker", kind, "--health-port", str(port)]
        if config is not None:
            command += ["--config", str(config)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.process: Popen[bytes] = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def ready(self) -> bool:
        try:
            response = httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1.0)
        except httpx.TransportError:
            return False
        return response.status_code == 200


def wait_ready(workers: list[LocalWorker], timeout_s: float = 120.0) -> None:
    """Block until every worker answers /readyz; a worker that dies or is late is an error."""
    deadline = time.monotonic() + timeout_s
    pending = list(workers)
    while pending:
        for worker in list(pending):
            if not worker.alive:
                raise RuntimeError(f"the {worker.kind} worker exited; see {worker.log_path}")
            if worker.ready():
                pending.remove(worker)
        if pending and time.monotonic() > deadline:
            names = ", ".join(w.kind for w in pending)
            raise RuntimeError(f"worker(s) {names} not ready after {timeout_s:g}s; see {LOG_DIR}")
        time.sleep(0.2)


def stop_all(workers: list[LocalWorker], timeout_s: float = 40.0) -> None:
    """SIGTERM (finish in-flight jobs, commit, exit), then SIGKILL whatever is left."""
    for worker in workers:
        if worker.alive:
            worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for worker in workers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        if worker.alive:
            worker.process.kill()
