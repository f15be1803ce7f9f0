"""The `fleet` command as a user runs it: the demo (the main job), schema, errors, lag."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.names import WORKER_KINDS
from contracts.schema import json_schema_text
from tests.conftest import REPO, Infra

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


@contextlib.contextmanager
def _held(ports: range) -> Iterator[list[int]]:
    """Listen on those of ``ports`` that are free, as another program on this machine
    would; yields the ones held."""
    with contextlib.ExitStack() as stack:
        held = []
        for port in ports:
            sock = stack.enter_context(socket.socket())
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue  # taken already: taken all the same
            sock.listen()
            held.append(int(sock.getsockname()[1]))
        yield held


def _bound_port() -> socket.socket:
    """A socket bound to a port the OS picked, not listening: a connection to that port is
    refused, and no other process can take it while the socket is open."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.mark.model
@pytest.mark.slow
async def test_the_demo_runs_every_kind_of_job(infra: Infra, namespace: str) -> None:
    # The demo's health ports were 9410-9414 once: taken ones must not stop it.
    with _held(range(9410, 9415)):
        code, output = await _fleet(
            "demo", "Say hello to Kafka.", "--max-tokens", "24", infra=infra, namespace=namespace
        )
    assert code == 0, output
    ready = dict(
        re.findall(r"\[fleet\] (\w+) worker ready: http://127\.0\.0\.1:(\d+)/metrics", output)
    )
    assert sorted(ready) == sorted(WORKER_KINDS), output
    assert len(set(ready.values())) == len(WORKER_KINDS)
    assert "== generate" in output
    assert "upserted 5 documents" in output
    assert "? How is bread made? -> bread" in output
    assert "completed, 5 rows embedded, 0 failed; 5 result lines" in output
    assert re.search(r"== rerank .*\n\? .*\n1\. \d\.\d\d  Apache Kafka", output), output
    assert "== transcribe" in output
    assert "== speech" in output
    spoken = re.search(r"spoke the answer: .* written to (\S+\.wav)", output)
    assert spoken is not None, output
    with wave.open(spoken[1]) as wav:  # the answer, spoken: a WAV file that plays
        assert wav.getnframes() / wav.getframerate() > 0.5


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


async def test_a_worker_whose_health_port_is_taken_says_so_in_one_line() -> None:
    with _held(range(0, 1)) as (port,):  # port 0: one the OS picks, listened on
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers.ops.cli", "worker", "generate",
            "--health-port", str(port), cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        # Fast: it fails before it loads the model (or reaches for Kafka).
        out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert out == b""
    assert err.decode() == (
        f"fleet: health port {port} is in use (address already in use): "
        "pick another with --health-port, or 0 for any free port\n"
    )


async def test_a_health_port_file_without_a_health_port_is_refused_in_one_line(
    infra: Infra, namespace: str, tmp_path: Path
) -> None:
    port_file = tmp_path / "worker.port"
    code, output = await _fleet(
        "worker", "vectors", "--health-port-file", str(port_file), infra=infra, namespace=namespace
    )
    assert code == 2
    assert output == ("fleet: --health-port-file needs a health port: --health-port P (0: any)\n")
    assert not port_file.exists()


@pytest.mark.model
async def test_a_worker_waits_for_a_broker_that_is_not_there_yet(
    infra: Infra, namespace: str
) -> None:
    with _bound_port() as nobody:
        broker = f"127.0.0.1:{nobody.getsockname()[1]}"
        env = {**os.environ, "FLEET_BOOTSTRAP_SERVERS": broker,
               "FLEET_REDIS_URL": infra.redis_url, "FLEET_NAMESPACE": namespace}  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers.ops.cli", "worker", "embed", cwd=REPO, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert process.stdout is not None
        first: list[bytes] = []  # up to the first try's failure (the model loads before it)
        async with asyncio.timeout(120):
            while not first or b"is not reachable" not in first[-1]:
                first.append(line := await process.stdout.readline())
                assert line, "the worker exited before it reached for Kafka"
        # What is tested is silence while it retries: two more tries come 0.5 s and 1.5 s
        # after the first (workers/app.py's backoff), well inside this.
        await asyncio.sleep(2.5)
        assert process.returncode is None, "the worker gave up instead of waiting"
        process.terminate()
        output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    text = b"".join(first).decode() + output.decode()
    assert process.returncode == 0
    assert text.count("is not reachable") == 1  # said once, not per attempt
    assert text.count("Unable connect to") == 1  # aiokafka's own line, once per outage
    assert "stopped before Kafka was reachable" in text
