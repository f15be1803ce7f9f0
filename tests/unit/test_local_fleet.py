"""The local fleet's supervision: how an exit is described, and the restart backoff."""

from __future__ import annotations

import signal
import subprocess

import pytest

from providers.shared import Shared
from tests.conftest import REPO
from workers.ops.local_fleet import (
    Supervisor,
    describe_exit,
    model_threads_env,
    start_needed_services,
)
from workers.settings import ProviderSpec, WorkerSettings


def test_exits_are_described_by_code_or_signal_name() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(2) == "exit code 2"
    assert describe_exit(-signal.SIGSEGV) == "signal SIGSEGV"
    assert describe_exit(-signal.SIGKILL) == "signal SIGKILL"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeWorker:
    """A worker that dies whenever the test says so."""

    def __init__(self, clock: Clock) -> None:
        self.kind = "embed"
        self._clock = clock
        self.started_at = clock.now
        self.alive = True
        self.restarts = 0

    def exit_report(self) -> str:
        return "the embed worker exited with signal SIGSEGV"

    def restart(self) -> None:
        self.alive = True
        self.started_at = self._clock.now
        self.restarts += 1


def _crash_and_restart(supervisor: Supervisor, worker: FakeWorker, clock: Clock) -> float:
    """Kill the worker, let the supervisor notice, return the delay it waited to restart."""
    worker.alive = False
    supervisor.tick()
    noticed = clock.now
    before = worker.restarts
    while worker.restarts == before:
        clock.now += 0.5
        supervisor.tick()
    return clock.now - noticed


def test_the_backoff_doubles_while_a_worker_keeps_dying_and_resets_once_it_is_stable() -> None:
    clock = Clock()
    worker = FakeWorker(clock)
    reports: list[str] = []
    supervisor = Supervisor(
        [worker], reports.append, first_backoff_s=1, max_backoff_s=4, stable_s=60, clock=clock
    )
    delays = [_crash_and_restart(supervisor, worker, clock) for _ in range(4)]
    assert delays == [1, 2, 4, 4]
    assert reports[0] == "the embed worker exited with signal SIGSEGV\nrestarting it in 1s"
    assert len(reports) == 4  # one report per exit, not one per tick

    clock.now += 61  # up for longer than stable_s
    supervisor.tick()
    assert _crash_and_restart(supervisor, worker, clock) == 1


@pytest.mark.postgres
def test_fleet_dev_starts_postgres_when_the_settings_select_local_pgvector() -> None:
    start_needed_services(WorkerSettings(vector_store=ProviderSpec(name="pgvector")))
    status = subprocess.run(
        ["bash", str(REPO / "deploy/local/postgres.sh"), "status"], capture_output=True, text=True
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.startswith("running 127.0.0.1:")


def test_a_remote_pgvector_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[object] = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: ran.append(a))
    remote = {"dsn": "postgresql://fleet@db.example.internal:5432/fleet"}
    start_needed_services(WorkerSettings(vector_store=ProviderSpec(name="pgvector", config=remote)))
    start_needed_services(WorkerSettings())  # the Redis store needs no PostgreSQL
    assert ran == []


def test_model_workers_started_together_split_the_cores() -> None:
    kinds = ["generate", "embed", "vectors", "batch", "transcribe"]
    assert model_threads_env(kinds, WorkerSettings(), cores=8) == {"FLEET_MODEL_THREADS": "2"}
    assert model_threads_env(["generate", "generate"], WorkerSettings(), cores=2) == {
        "FLEET_MODEL_THREADS": "1"
    }
    # Never fewer than one; none for workers without a model, nor over the settings' own.
    assert model_threads_env(kinds, WorkerSettings(), cores=2) == {"FLEET_MODEL_THREADS": "1"}
    assert model_threads_env(["vectors", "batch"], WorkerSettings(), cores=8) == {}
    # The rerank worker runs the MiniLM bi-encoder: one more model.
    assert model_threads_env([*kinds, "rerank"], WorkerSettings(), cores=8) == {
        "FLEET_MODEL_THREADS": "2"
    }
    assert model_threads_env(["rerank"], WorkerSettings(), cores=8) == {"FLEET_MODEL_THREADS": "8"}
    assert model_threads_env(kinds, WorkerSettings(model_threads=4), cores=8) == {}


def test_a_providers_own_thread_count_wins_over_the_workers_share() -> None:
    assert Shared(model_threads=1).threads_for(3) == 3
    assert Shared(model_threads=1).threads_for(None) == 1
    assert Shared().threads_for(None) >= 1  # every core
