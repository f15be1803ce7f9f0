"""The `fleet` command as a user runs it: the demo (the main job), schema, errors, lag."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from contracts.schema import json_schema_text
from tests.conftest import REPO, Infra
from tests.integration.worker_processes import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


async def _fleet(*args: str, infra: Infra, namespace: str) -> tuple[int, str]:
    env = {
        **os.environ,
        **infra.kafka_env(),
        "FLEET_REDIS_URL": infra.redis_url,
        "FLEET_NAMESPACE": namespace,
        "FLEET_HOME": str(REPO / ".fleet"),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.ops.cli",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=240)
    assert process.returncode is not None
    return process.returncode, output.decode()


@pytest.mark.model
@pytest.mark.slow
async def test_the_demo_runs_every_kind_of_job(infra: Infra, namespace: str) -> None:
    base_port = free_port()
    code, output = await _fleet(
        "demo",
        "Say hello to Kafka.",
        "--max-tokens",
        "24",
        "--health-base-port",
        str(base_port),
        infra=infra,
        namespace=namespace,
    )
    assert code == 0, output
    assert "== generate" in output
    assert "upserted 5 documents" in output
    assert "? How is bread made? -> bread" in output
    assert "completed, 5 rows embedded, 0 failed; 5 result lines" in output
    assert "== transcribe" in output


async def test_schema_prints_the_committed_contract(infra: Infra, namespace: str) -> None:
    code, output = await _fleet("schema", infra=infra, namespace=namespace)
    assert code == 0
    assert output == json_schema_text()


async def test_a_bad_config_fails_with_the_field_named(
    infra: Infra, namespace: str, tmp_path: Path
) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text("concurrency = -1\n")
    code, output = await _fleet(
        "worker", "generate", "--config", str(config), infra=infra, namespace=namespace
    )
    assert code == 2
    assert "fleet: invalid worker settings" in output
    assert "concurrency" in output


async def test_status_and_lag_answer_for_a_fresh_namespace(infra: Infra, namespace: str) -> None:
    code, output = await _fleet("status", "nobody", infra=infra, namespace=namespace)
    assert code == 0
    assert "unknown to the fleet" in output
    code, output = await _fleet("lag", infra=infra, namespace=namespace)
    assert code == 0
    assert "no request topics yet" in output


async def test_the_janitor_dry_run_deletes_nothing(infra: Infra, namespace: str) -> None:
    code, output = await _fleet(
        "janitor", "--older-than", "600", "--dry-run", infra=infra, namespace=namespace
    )
    assert code == 0
    assert "would delete 0 reply topic(s)" in output


@pytest.mark.model
async def test_a_model_that_fails_its_start_up_check_stops_the_worker_naming_it(
    infra: Infra, namespace: str, tmp_path: Path
) -> None:
    weights = tmp_path / "broken.gguf"
    weights.write_bytes(b"not a model" * 1000)
    config = tmp_path / "fleet.toml"
    config.write_text(f'[[chat]]\nname = "local-llama"\nconfig = {{ model_path = "{weights}" }}\n')
    code, output = await _fleet(
        "worker", "generate", "--config", str(config), infra=infra, namespace=namespace
    )
    assert code == 2
    assert "fleet: chat provider 'local-llama' failed its start-up check" in output
    assert "does not look like a valid GGUF model file" in output


@pytest.mark.model
async def test_a_worker_waits_for_a_broker_that_is_not_there_yet(
    infra: Infra, namespace: str
) -> None:
    env = {**os.environ, "FLEET_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
           "FLEET_REDIS_URL": infra.redis_url, "FLEET_NAMESPACE": namespace}  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.ops.cli", "worker", "embed", cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    await asyncio.sleep(8)  # long enough for several reconnect attempts
    assert process.returncode is None, "the worker gave up instead of waiting"
    process.terminate()
    output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    text = output.decode()
    assert process.returncode == 0
    assert text.count("is not reachable") == 1  # said once, not per attempt
    assert text.count("Unable connect to") == 1  # aiokafka's own line, once per outage
    assert "stopped before Kafka was reachable" in text
