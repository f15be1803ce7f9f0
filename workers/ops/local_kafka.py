"""What deploy/local/kafka.sh says about the local broker's secured listeners (a SASL_SSL
one and a TLS one that wants a client certificate, with a CA of its own): the SDK and
worker settings to reach them, for the tests and benchmarks that use them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec

from contracts.secrets import Secret
from transport.connection import KafkaSecurity, SaslMechanism

REPO = Path(__file__).resolve().parents[2]


class SecuredListeners(msgspec.Struct, frozen=True):
    """``$FLEET_HOME/kafka/listeners-<port>.json``, written when the broker starts."""

    sasl_ssl: str
    ssl: str
    username: str
    password_file: str
    ca_file: str
    client_cert: str
    client_key: str

    def sasl(
        self, mechanism: SaslMechanism = "SCRAM-SHA-512", password: str | None = None
    ) -> KafkaSecurity:
        return KafkaSecurity(
            security_protocol="SASL_SSL",
            sasl_mechanism=mechanism,
            sasl_username=self.username,
            sasl_password=Secret(password or Path(self.password_file).read_text().strip()),
            ssl_cafile=self.ca_file,
        )

    def mutual_tls(self) -> KafkaSecurity:
        return KafkaSecurity(
            security_protocol="SSL",
            ssl_cafile=self.ca_file,
            ssl_certfile=self.client_cert,
            ssl_keyfile=self.client_key,
        )


def local_secured_listeners() -> SecuredListeners:
    """The listeners of the local broker that FLEET_HOME and FLEET_KAFKA_PORT name."""
    home = Path(os.environ.get("FLEET_HOME", REPO / ".fleet"))
    port = os.environ.get("FLEET_KAFKA_PORT", "19092")
    text = (home / "kafka" / f"listeners-{port}.json").read_text()
    return msgspec.convert(json.loads(text), SecuredListeners)
