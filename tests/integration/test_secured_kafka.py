"""The fleet on a secured broker, the ways it goes wrong and a `fleet worker` process
configured by FLEET_* variables alone: wrong credentials, an untrusted certificate or a
missing client certificate are a clear error at once, never a wait for a broker that is
"not up", and a secret never shows. Each kind of client going through the secured listeners
(SCRAM-SHA-512 and mTLS, PLAIN and SCRAM-SHA-256 too) is in test_secured_clients.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest

from contracts.secrets import Secret
from producer_sdk import KafkaAccessError, KafkaSecurity, VectorRecord
from providers.router import ModelRouter
from tests.conftest import Infra
from tests.integration.scripted_chat import ScriptedChat
from tests.integration.worker_processes import WorkerProcess
from workers import Worker, WorkerSettings
from workers.handlers.generate import GenerateHandler
from workers.ops.local_kafka import SecuredListeners, local_secured_listeners

pytestmark = [pytest.mark.secured, pytest.mark.kafka, pytest.mark.private_kafka, pytest.mark.redis]


@pytest.fixture
def listeners(infra: Infra) -> SecuredListeners:
    return local_secured_listeners()


def _secured(infra: Infra, servers: str, security: KafkaSecurity) -> Infra:
    return Infra(servers, infra.redis_url, security)


async def test_a_wrong_password_is_a_clear_error_for_the_client(
    listeners: SecuredListeners, infra: Infra, namespace: str
) -> None:
    wrong = _secured(infra, listeners.sasl_ssl, listeners.sasl("SCRAM-SHA-256", "not-it"))
    started = time.monotonic()
    with pytest.raises(KafkaAccessError, match="wrong username or password") as info:
        async with wrong.client(namespace=namespace):
            pass
    assert time.monotonic() - started < 15
    assert "not-it" not in str(info.value)
    assert repr(listeners.username) in str(info.value)


async def test_an_untrusted_certificate_and_a_missing_client_certificate_are_named(
    listeners: SecuredListeners, infra: Infra, namespace: str
) -> None:
    system_cas = msgspec.structs.replace(listeners.sasl(), ssl_cafile=None)
    with pytest.raises(KafkaAccessError, match="not trusted by the system CAs"):
        async with _secured(infra, listeners.sasl_ssl, system_cas).client(namespace=namespace):
            pass
    no_certificate = KafkaSecurity(security_protocol="SSL", ssl_cafile=listeners.ca_file)
    with pytest.raises(KafkaAccessError, match="client certificate"):
        async with _secured(infra, listeners.ssl, no_certificate).client(namespace=namespace):
            pass


async def test_a_worker_with_a_wrong_password_stops_with_the_reason(
    listeners: SecuredListeners, settings: WorkerSettings
) -> None:
    settings = msgspec.structs.replace(
        settings,
        bootstrap_servers=listeners.sasl_ssl,
        kafka=listeners.sasl("PLAIN", "not-it"),
    )
    worker = Worker("generate", settings, GenerateHandler(ModelRouter("chat", [ScriptedChat()])))
    with pytest.raises(KafkaAccessError, match="refused the PLAIN login"):
        await asyncio.wait_for(worker.run(), timeout=30)


async def test_a_worker_process_takes_its_security_from_the_environment(
    listeners: SecuredListeners, infra: Infra, namespace: str, tmp_path: Path
) -> None:
    """FLEET_* variables alone (the password from a file, as a mounted secret is read)
    point a `fleet worker` at the SASL_SSL listener; a wrong password makes it exit at once."""
    secured = _secured(infra, listeners.sasl_ssl, listeners.sasl("SCRAM-SHA-256"))
    config = tmp_path / "fleet.toml"
    config.write_text("")  # vectors: the Redis vector store, no model
    from_file = {"FLEET_SASL_PASSWORD": f"file:{listeners.password_file}"}
    wrong_one = {"FLEET_SASL_PASSWORD": "not-it"}
    worker = WorkerProcess(
        "vectors", secured, namespace, config, tmp_path / "ok.log", env=from_file
    )
    wrong = WorkerProcess("vectors", secured, namespace, config, tmp_path / "no.log", env=wrong_one)
    try:
        assert wrong.process.wait(timeout=60) == 2
        said = (tmp_path / "no.log").read_text()
        assert "wrong username or password" in said
        assert "not-it" not in said
        await worker.wait_ready()
        async with secured.client(namespace=namespace) as client:
            done = await client.upsert("docs", [VectorRecord(id="a", vector=[0.6, 0.8])])
        assert done.upserted == 1
    finally:
        worker.ensure_stopped()
        wrong.ensure_stopped()


def test_a_secret_in_the_security_settings_never_shows() -> None:
    security = KafkaSecurity(
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="svc",
        sasl_password=Secret("hunter2-hunter2"),
    )
    assert "hunter2" not in repr(security)
    assert "hunter2" not in repr(WorkerSettings(kafka=security))
