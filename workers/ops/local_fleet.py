"""Worker processes on this machine, for `fleet dev` and `fleet demo`, watched: a worker that
exits is reported (kind, exit code or signal, the end of its log) within a second."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from subprocess import Popen
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from contracts.errors import FleetError
from workers.health_port import read_port_file
from workers.settings import WorkerSettings

LOG_DIR = Path(os.environ.get("FLEET_HOME", ".fleet")) / "logs"
# Where the workers write their health ports (beside the services' pid files).
RUN_DIR = LOG_DIR.parent / "run"
# The local services' scripts, present in a clone (not in an installed package).
_POSTGRES_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "local" / "postgres.sh"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Kinds whose default providers run a model on this machine's cores.
MODEL_KINDS = frozenset({"generate", "embed", "transcribe", "rerank"})
MODEL_THREADS_ENV = "FLEET_MODEL_THREADS"
WATCH_INTERVAL_S = 0.5
_LOG_TAIL_LINES = 15


class WorkerExited(FleetError):
    """A worker process of the local fleet ended on its own."""


def stop_on_sigterm() -> None:
    """Make SIGTERM stop this process the way Ctrl-C does, so that a process manager
    stopping `fleet dev` or `fleet demo` stops their workers too instead of orphaning them."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def describe_exit(returncode: int) -> str:
    """'exit code 3' or 'signal SIGSEGV' (Popen reports a signal as a negative code)."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"signal {-returncode}"


def metrics_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/metrics"


class LocalWorker:
    """One `fleet worker <kind>` process with its health endpoint on ``fixed_port``, or by
    default on a port the OS picks (a fixed default may be taken on this machine). Either
    way the worker writes the port it serves on to ``port_file``; ``port`` is None until
    it has, and again from a restart until the new process has."""

    def __init__(
        self,
        kind: str,
        fixed_port: int | None = None,
        config: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.log_path = LOG_DIR / f"worker-{kind}.log"
        # One per `fleet` process: two fleets in one clone must not read each other's ports.
        self.port_file = RUN_DIR / f"worker-{kind}-{os.getpid()}.port"
        self._port: int | None = None
        self._command = [
            sys.executable, "-m", "workers.ops.cli", "worker", kind,
            "--health-port", str(fixed_port or 0), "--health-port-file", str(self.port_file),
            *(["--config", str(config)] if config is not None else []),
        ]  # fmt: skip
        self._env = {**os.environ, **(env or {})}
        self.started_at = 0.0
        self.process = self._spawn()

    @property
    def port(self) -> int | None:
        """The health port of the running process, once it serves on it."""
        if self._port is None:
            self._port = read_port_file(self.port_file)
        return self._port

    def _spawn(self) -> Popen[bytes]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # The previous process's port is not this one's (the OS picks a new one).
        self._port = None
        self.port_file.unlink(missing_ok=True)
        self.started_at = time.monotonic()
        with self.log_path.open("ab") as log_file:
            return subprocess.Popen(
                self._command, stdout=log_file, stderr=subprocess.STDOUT, env=self._env
            )

    def restart(self) -> None:
        self.process = self._spawn()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def ready(self) -> bool:
        if (port := self.port) is None:
            return False  # not serving yet
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0)
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def exit_report(self) -> str:
        """What a person needs to see when this worker ended: how, and its last log lines."""
        code = self.process.poll()
        how = "is still running" if code is None else f"exited with {describe_exit(code)}"
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        except OSError:
            lines = []
        tail = "\n".join(f"  | {line}" for line in lines) or "  | (the log is empty)"
        return f"the {self.kind} worker {how}; the end of {self.log_path}:\n{tail}"


def model_threads_env(
    kinds: Iterable[str], settings: WorkerSettings, cores: int | None = None
) -> dict[str, str]:
    """``FLEET_MODEL_THREADS`` for workers of ``kinds`` started together on this machine:
    each model worker's share of the cores (at least one), so that they do not oversubscribe
    them (two generate workers each on every core of 2 served a quarter of what they served
    on one thread each: decision 0029). Nothing when the settings name ``model_threads``
    (in the file or the environment) or no model worker is among them."""
    models = sum(kind in MODEL_KINDS for kind in kinds)
    if settings.model_threads is not None or models == 0:
        return {}
    share = max(1, (cores or os.cpu_count() or 1) // models)
    return {MODEL_THREADS_ENV: str(share)}


def start_needed_services(settings: WorkerSettings) -> None:
    """Start the local PostgreSQL when the settings select pgvector on this machine (Kafka
    and Redis are started by deploy/local/services.sh, which every local run needs)."""
    spec = settings.vector_store
    if spec.name != "pgvector" or not _POSTGRES_SCRIPT.is_file():
        return
    dsn = spec.config.get("dsn")
    # No DSN: the provider's default, which is the local server.
    host = urlsplit(dsn).hostname if isinstance(dsn, str) else _LOOPBACK[0]
    if host in _LOOPBACK:
        subprocess.run(["bash", str(_POSTGRES_SCRIPT), "start"], check=True)


def first_exited(workers: list[LocalWorker]) -> LocalWorker | None:
    return next((w for w in workers if not w.alive), None)


class AddressBoard:
    """Prints each worker's metrics address once the worker has told it, and again once a
    restarted worker has (its port is new unless it is fixed)."""

    def __init__(self, workers: Sequence[LocalWorker], say: Callable[[str], None]) -> None:
        self._workers = workers
        self._say = say
        self._shown: dict[str, tuple[int, int]] = {}  # kind -> (pid, port) last printed

    def update(self) -> None:
        for worker in self._workers:
            if (port := worker.port) is None:
                continue  # not serving yet
            told = (worker.process.pid, port)
            if self._shown.get(worker.kind) != told:
                self._shown[worker.kind] = told
                self._say(f"{worker.kind}: {metrics_url(port)}, log {worker.log_path}")


def wait_ready(
    workers: list[LocalWorker],
    timeout_s: float = 120.0,
    on_poll: Callable[[], None] | None = None,
) -> None:
    """Block until every worker answers /readyz; a worker that dies or is late is an error.
    ``on_poll`` runs on every look (to print addresses as they become known)."""
    deadline = time.monotonic() + timeout_s
    pending = list(workers)
    while pending:
        if (dead := first_exited(workers)) is not None:
            raise WorkerExited(dead.exit_report())
        pending = [w for w in pending if not w.ready()]
        if on_poll is not None:
            on_poll()
        if pending and time.monotonic() > deadline:
            names = ", ".join(w.kind for w in pending)
            raise WorkerExited(f"worker(s) {names} not ready after {timeout_s:g}s; see {LOG_DIR}")
        time.sleep(0.2)


class Supervised(Protocol):
    """What the supervisor needs of a worker (a LocalWorker)."""

    kind: str
    started_at: float

    @property
    def alive(self) -> bool: ...

    def exit_report(self) -> str: ...

    def restart(self) -> None: ...


class Supervisor:
    """Restarts workers that exit, with a backoff that doubles while they keep exiting soon
    after starting and resets once one has stayed up for ``stable_s``."""

    def __init__(
        self,
        workers: Sequence[Supervised],
        report: Callable[[str], None],
        *,
        first_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        stable_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._workers = workers
        self._report = report
        self._clock = clock
        self._first_backoff_s = first_backoff_s
        self._max_backoff_s = max_backoff_s
        self._stable_s = stable_s
        self._backoff_s = {w.kind: first_backoff_s for w in workers}
        self._restart_at: dict[str, float] = {}
        self.restarts = 0

    def tick(self) -> None:
        """Look once: report new exits, restart those whose backoff has passed."""
        now = self._clock()
        for worker in self._workers:
            if worker.alive:
                if now - worker.started_at >= self._stable_s:
                    self._backoff_s[worker.kind] = self._first_backoff_s
                continue
            if worker.kind not in self._restart_at:
                delay = self._backoff_s[worker.kind]
                self._report(f"{worker.exit_report()}\nrestarting it in {delay:g}s")
                self._restart_at[worker.kind] = now + delay
                self._backoff_s[worker.kind] = min(delay * 2, self._max_backoff_s)
            elif now >= self._restart_at[worker.kind]:
                del self._restart_at[worker.kind]
                worker.restart()
                self.restarts += 1


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
        worker.port_file.unlink(missing_ok=True)
