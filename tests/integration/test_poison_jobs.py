"""A job that kills its worker (a native crash in a model library) is retried at most
``max_crash_attempts`` times, then dead-lettered as `worker_crashed` with an error reply:
it cannot crash-loop the fleet."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from contracts import ErrorCode, Header
from producer_sdk import FleetClient, FleetRequestError
from tests.conftest import Infra
from tests.integration.crashing_worker import CRASH_MARKER
from tests.integration.harness import read_dead_letters
from tests.integration.worker_processes import WorkerProcess

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

CONFIG = """
partitions = 1
session_timeout_ms = 6000
lock_ttl_s = 2.0
max_crash_attempts = 1

[[chat]]
name = "crash-on-marker"
"""


async def test_a_job_that_keeps_crashing_its_worker_is_dead_lettered(
    infra: Infra, namespace: str, tmp_path: Path, client: FleetClient
) -> None:
    config = tmp_path / "worker.toml"
    config.write_text(CONFIG)
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        worker = WorkerProcess(
            "generate", infra, namespace, config, log, module="tests.integration.crashing_worker"
        )
        started.append(worker)
        return worker

    ask = asyncio.create_task(
        client.generate(f"Please {CRASH_MARKER}", model="scripted-model", timeout_s=180)
    )
    try:
        # The first run and the one retry allowed: each worker that takes the job dies.
        for _ in range(2):
            worker = start()
            assert await asyncio.to_thread(worker.wait, 90) == -signal.SIGSEGV
        survivor = start()
        await survivor.wait_ready()
        with pytest.raises(FleetRequestError) as failed:
            await asyncio.wait_for(ask, timeout=90)
        assert failed.value.code == ErrorCode.INTERNAL
        assert "died 2 times while running this job" in str(failed.value)

        dead = await read_dead_letters(infra, namespace, expected=1)
        assert len(dead) == 1
        headers = dict(dead[0].headers)
        assert headers[Header.DLQ_REASON] == b"worker_crashed"
        assert b"died 2 times" in headers[Header.DLQ_DETAIL]

        # The worker that gave the job up is alive and serves the next one.
        answer = await client.generate("Hello?", model="scripted-model", timeout_s=60)
        assert answer.text == "Hello, world"
        assert survivor.process.poll() is None
    finally:
        ask.cancel()
        for worker in started:
            worker.ensure_stopped()
