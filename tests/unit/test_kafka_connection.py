"""Kafka security settings: validated at once with the field named, read alike from code,
the workers' TOML file and FLEET_* variables, and turned into the same aiokafka options."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from contracts.errors import ConfigError
from contracts.secrets import Secret
from producer_sdk import FleetClient, KafkaSecurity
from transport.connection import KafkaConnection, refusal_reason, start_client
from workers.settings import load_settings

SASL = {
    "FLEET_SECURITY_PROTOCOL": "SASL_SSL",
    "FLEET_SASL_MECHANISM": "SCRAM-SHA-256",
    "FLEET_SASL_USERNAME": "svc",
}


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}, "needs sasl_mechanism"),
        ({"sasl_mechanism": "PLAIN"}, "security_protocol is PLAINTEXT"),
        ({"security_protocol": "SSL", "ssl_certfile": "/etc/hostname"}, "go together"),
        ({"ssl_cafile": "/etc/hostname"}, "TLS files are set"),
        ({"security_protocol": "SSL", "ssl_cafile": "/no/such/ca.pem"}, "not a readable file"),
        ({"security_protocol": "SASL_SSH"}, "security_protocol"),
    ],
)
def test_inconsistent_settings_are_refused_with_the_reason(
    fields: dict[str, str], complaint: str
) -> None:
    with pytest.raises(msgspec.ValidationError, match=complaint):
        msgspec.convert(fields, KafkaSecurity)


def test_the_environment_configures_the_sdk_and_the_workers_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret-from-a-file\n")
    env = {**SASL, "FLEET_SASL_PASSWORD": f"file:{password}", "FLEET_SSL_CHECK_HOSTNAME": "false"}
    expected = KafkaSecurity(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="svc",
        sasl_password=Secret("s3cret-from-a-file"),
        ssl_check_hostname=False,
    )
    assert KafkaSecurity.from_env(env) == expected
    client = FleetClient.from_env({**env, "FLEET_BOOTSTRAP_SERVERS": "k1:9093,k2:9093"})
    assert client.connection == KafkaConnection(
        bootstrap_servers="k1:9093,k2:9093", security=expected
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_settings().kafka == expected


def test_the_variables_override_the_toml_table_field_by_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text(
        '[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_mechanism = "PLAIN"\n'
        'sasl_username = "from-toml"\nsasl_password = "env:KAFKA_PASSWORD"\n'
    )
    monkeypatch.setenv("KAFKA_PASSWORD", "pw")
    monkeypatch.setenv("FLEET_SASL_USERNAME", "from-env")
    kafka = load_settings(config).kafka
    assert (kafka.sasl_mechanism, kafka.sasl_username, kafka.sasl_password) == (
        "PLAIN",
        "from-env",
        Secret("pw"),
    )


def test_a_missing_password_variable_is_named_not_guessed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**SASL, "FLEET_SASL_PASSWORD": "env:NOT_SET_ANYWHERE"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
        load_settings()


def test_options_carry_tls_and_sasl_to_every_client() -> None:
    security = KafkaSecurity(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password=Secret("pw"),
    )
    options = KafkaConnection(bootstrap_servers="b:1", security=security).options()
    assert options["security_protocol"] == "SASL_SSL"
    assert (options["sasl_mechanism"], options["sasl_plain_username"]) == ("SCRAM-SHA-512", "svc")
    assert options["sasl_plain_password"] == "pw"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].check_hostname
    assert "ssl_context" not in KafkaConnection(bootstrap_servers="b:1").options()


async def test_a_port_that_never_answers_is_not_taken_for_a_refusal() -> None:
    """A listener that accepts and then says nothing (an overloaded or half-started broker,
    a proxy) times out: that is a broker not reachable yet, to be waited for, not a
    protocol mismatch to give up on."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        security = KafkaSecurity(security_protocol="SSL")
        connection = KafkaConnection(bootstrap_servers=f"127.0.0.1:{port}", security=security)
        assert await refusal_reason(connection, timeout_s=0.3) is None


@pytest.mark.parametrize("kind", ["consumer", "producer", "admin"])
async def test_a_start_cancelled_half_way_closes_the_client(kind: str) -> None:
    """A caller cancelled while its client connects (Ctrl-C, a worker told to stop) owns no
    client yet, so start_client closes it: nothing is left for the garbage collector to
    find unclosed."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        connection = KafkaConnection(bootstrap_servers=f"127.0.0.1:{silent.getsockname()[1]}")
        client: AIOKafkaConsumer | AIOKafkaProducer | AIOKafkaAdminClient = {
            "consumer": lambda: AIOKafkaConsumer(**connection.options(), group_id=None),
            "producer": lambda: AIOKafkaProducer(**connection.options()),
            "admin": lambda: AIOKafkaAdminClient(**connection.options()),
        }[kind]()
        starting = asyncio.create_task(start_client(client, connection))
        await asyncio.sleep(0.3)  # connected, waiting for an answer that never comes
        assert not starting.done()
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starting
        assert client._closed is True
