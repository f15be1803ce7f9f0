"""How the SDK and the workers reach a Kafka cluster: its addresses and its security (TLS,
SASL), from code, the workers' TOML file (``[kafka]``) or ``FLEET_*`` environment variables.

Every Kafka client the project opens takes its options from ``KafkaConnection.options()``,
so a setting made here holds for producers, consumers and admin clients alike.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context

from contracts.errors import ConfigError, FleetError
from contracts.secrets import Secret, decode_secret

DEFAULT_BOOTSTRAP = "127.0.0.1:19092"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSecurity(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """TLS and SASL settings (``[kafka]`` in the workers' TOML file). Passwords are
    ``Secret`` values: in TOML and the environment they may be ``"env:NAME"`` or
    ``"file:PATH"``."""

    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    # The CA bundle that signed the brokers' certificates (None: the system's CAs).
    ssl_cafile: str | None = None
    # A client certificate and its key, for brokers that require one (mutual TLS).
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password: Secret | None = None
    ssl_check_hostname: bool = True

    def __post_init__(self) -> None:
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise msgspec.ValidationError(
                f"security_protocol {self.security_protocol} needs sasl_mechanism, "
                "sasl_username and sasl_password"
            )
        if not sasl and self.sasl_mechanism is not None:
            raise msgspec.ValidationError(
                f"sasl_mechanism is set but security_protocol is {self.security_protocol}: "
                "use SASL_SSL (or SASL_PLAINTEXT)"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise msgspec.ValidationError("ssl_certfile and ssl_keyfile go together")
        tls_files = (self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile)
        if not self.uses_tls and any(tls_files):
            raise msgspec.ValidationError(
                f"TLS files are set but security_protocol is {self.security_protocol}: "
                "use SSL or SASL_SSL"
            )
        for name, path in zip(
            ("ssl_cafile", "ssl_certfile", "ssl_keyfile"), tls_files, strict=True
        ):
            if path is not None and not Path(path).is_file():
                raise msgspec.ValidationError(f"{name}: {path!r} is not a readable file")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.uses_tls:
            return None
        key_password = self.ssl_key_password.reveal() if self.ssl_key_password else None
        try:
            context: ssl.SSLContext = create_ssl_context(
                cafile=self.ssl_cafile,
                certfile=self.ssl_certfile,
                keyfile=self.ssl_keyfile,
                password=key_password,
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"the Kafka TLS files cannot be used: {exc}") from None
        context.check_hostname = self.ssl_check_hostname
        return context

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
        """The settings the ``FLEET_*`` variables name (``FLEET_SECURITY_PROTOCOL``,
        ``FLEET_SASL_MECHANISM``, ``FLEET_SASL_USERNAME``, ``FLEET_SASL_PASSWORD``,
        ``FLEET_SSL_CAFILE``, ...); unset ones keep their defaults."""
        return decode_security(security_from_env(environ))


PLAINTEXT = KafkaSecurity()

# FLEET_* variable -> KafkaSecurity field.
SECURITY_ENV = {f"FLEET_{field.upper()}": field for field in KafkaSecurity.__struct_fields__}


def security_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str | bool]:
    """The KafkaSecurity fields set by ``FLEET_*`` variables (not yet validated)."""
    env = os.environ if environ is None else environ
    raw: dict[str, str | bool] = {
        field: env[name] for name, field in SECURITY_ENV.items() if env.get(name)
    }
    if isinstance(check := raw.get("ssl_check_hostname"), str):
        raw["ssl_check_hostname"] = check.strip().lower() not in ("0", "false", "no", "off")
    return raw


def decode_security(raw: Mapping[str, Any]) -> KafkaSecurity:
    try:
        return msgspec.convert(raw, KafkaSecurity, dec_hook=decode_secret)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid Kafka security settings: {exc}") from None


class KafkaConnection(msgspec.Struct, frozen=True, kw_only=True):
    """A cluster's addresses and how to talk to it securely."""

    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    security: KafkaSecurity = PLAINTEXT

    def options(self) -> dict[str, Any]:
        """Keyword arguments every aiokafka client (producer, consumer, admin) takes."""
        s = self.security
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": s.security_protocol,
        }
        if s.uses_tls:
            options["ssl_context"] = s.ssl_context()
        if s.sasl_mechanism is not None:
            options["sasl_mechanism"] = s.sasl_mechanism
            options["sasl_plain_username"] = s.sasl_username
            options["sasl_plain_password"] = s.sasl_password.reveal() if s.sasl_password else None
        return options

    def describe(self) -> str:
        """For logs and errors: the addresses and the protocol, never a secret."""
        s = self.security
        how = s.security_protocol + (f"/{s.sasl_mechanism}" if s.sasl_mechanism else "")
        user = f" as {s.sasl_username!r}" if s.sasl_username else ""
        return f"{self.bootstrap_servers} ({how}{user})"


def as_connection(servers: str | KafkaConnection) -> KafkaConnection:
    """Plain addresses (an unsecured cluster) or a connection as it is."""
    return (
        servers
        if isinstance(servers, KafkaConnection)
        else KafkaConnection(bootstrap_servers=servers)
    )


def passing(error: KafkaError) -> bool:
    """Whether a Kafka error passes by itself: the broker cannot be reached or did not
    answer in time, or says to try again (its own ``retriable`` flag). Anything else (a
    record too large, a denied topic) fails the same way when tried again."""
    return isinstance(error, KafkaConnectionError | KafkaTimeoutError) or error.retriable


class KafkaAccessError(FleetError):
    """The cluster is there but refuses this client: wrong credentials or mechanism, an
    untrusted certificate, a protocol the listener does not speak. Waiting will not help."""


class _Starts(Protocol):
    async def start(self) -> None: ...


async def start_client(client: _Starts, connection: KafkaConnection) -> None:
    """``client.start()``, with the reason a secured cluster refused it, where it did.

    aiokafka reports every failed bootstrap as "Unable to bootstrap" and logs the cause:
    a wrong password would look like a broker that is not up yet, and be waited for forever.
    A start that fails or is cancelled half-way closes what it opened, so the caller owns
    a client only once this returns.
    """
    try:
        await client.start()
    except BaseException as exc:
        # aiokafka's admin client closes; its consumer and producer stop (both: idempotent).
        await (client.close() if isinstance(client, AIOKafkaAdminClient) else client.stop())  # type: ignore[attr-defined]
        if isinstance(exc, KafkaConnectionError):
            refusal = await refusal_reason(connection)
            if refusal is not None:
                raise KafkaAccessError(refusal) from None
        raise


async def refusal_reason(connection: KafkaConnection, timeout_s: float = 5.0) -> str | None:
    """Why the cluster refuses this client, or None when it does not (not reachable, or
    reachable and accepting). A login or certificate refused is a refusal at once; a port
    that hangs up on this protocol, only when it does so twice a second apart (a broker that
    is shutting down hangs up too)."""
    suspect = None
    for attempt in range(2):
        for address in connection.bootstrap_servers.split(","):
            outcome = await _try_connect(address.strip(), connection, timeout_s)
            if isinstance(outcome, _Refused) and (outcome.certain or attempt):
                return outcome.reason
            if isinstance(outcome, _Refused):
                suspect = outcome
            elif outcome == "accepted":
                return None
        if suspect is None:
            return None
        await asyncio.sleep(1.0)
    return None


class _Refused(msgspec.Struct, frozen=True):
    reason: str
    certain: bool


async def _try_connect(
    address: str, connection: KafkaConnection, timeout_s: float
) -> _Refused | Literal["accepted", "unreachable"]:
    options = connection.options()
    host, _, port = address.rpartition(":")
    try:
        conn = await asyncio.wait_for(
            create_conn(
                host,
                int(port),
                request_timeout_ms=int(timeout_s * 1000),
                ssl_context=options.get("ssl_context"),
                security_protocol=options["security_protocol"],
                sasl_mechanism=options.get("sasl_mechanism"),
                sasl_plain_username=options.get("sasl_plain_username"),
                sasl_plain_password=options.get("sasl_plain_password"),
            ),
            timeout=timeout_s,
        )
    except Exception as exc:
        return _refusal(address, connection.security, exc) or "unreachable"
    conn.close()
    return "accepted"


def _refusal(address: str, security: KafkaSecurity, exc: BaseException) -> _Refused | None:
    how = security.security_protocol
    if isinstance(exc, SaslAuthenticationFailed):
        return _Refused(
            f"Kafka at {address} refused the {security.sasl_mechanism} login of "
            f"{security.sasl_username!r}: wrong username or password ({exc})",
            certain=True,
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        return _Refused(
            f"Kafka at {address} does not offer SASL mechanism {security.sasl_mechanism}: {exc}",
            certain=True,
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        trust = f"ssl_cafile {security.ssl_cafile!r}" if security.ssl_cafile else "the system CAs"
        return _Refused(
            f"the TLS certificate of Kafka at {address} is not trusted by {trust}: "
            f"{exc.verify_message}",
            certain=True,
        )
    if isinstance(exc, ssl.SSLError):
        return _Refused(
            f"the TLS handshake with Kafka at {address} failed ({exc.reason}): does this "
            f"listener speak {how}?",
            certain=True,
        )
    if isinstance(exc, KafkaConnectionError | ConnectionError) and not isinstance(
        exc, ConnectionRefusedError
    ):
        # The port answers, but not as this protocol expects: a TLS listener spoken to in
        # plain text (or the reverse) hangs up, and so does one that wants a client
        # certificate this client has not got. (A timeout is no such sign: a port that never
        # answers is a broker not reachable, and waited for.)
        certificate = (
            ", or does it want a client certificate (ssl_certfile, ssl_keyfile)?"
            if security.uses_tls and security.ssl_certfile is None
            else "?"
        )
        return _Refused(
            f"Kafka at {address} accepted a connection but hung up on it ({exc!r}): is it "
            f"a {how} listener{certificate}",
            certain=False,
        )
    return None
