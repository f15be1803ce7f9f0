"""Workers: the consume loop, commit tracking, dead letters, and one handler per category."""

from workers.app import WORKER_KINDS, Worker, build_handler, build_worker
from workers.settings import ProviderSpec, WorkerSettings, load_settings

__all__ = [
    "WORKER_KINDS",
    "ProviderSpec",
    "Worker",
    "WorkerSettings",
    "build_handler",
    "build_worker",
    "load_settings",
]
