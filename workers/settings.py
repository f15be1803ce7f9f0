"""Worker configuration: a msgspec Struct loaded from a TOML file and environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import msgspec

from contracts.errors import ConfigError
from contracts.names import DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_NAMESPACE

DEFAULT_BOOTSTRAP = "127.0.0.1:19092"
DEFAULT_REDIS_URL = "redis://127.0.0.1:16379/0"


class ProviderSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    redis_url: str = DEFAULT_REDIS_URL
    namespace: str = DEFAULT_NAMESPACE
    # Default group: "<namespace>.<kind>.workers"; every replica of a kind shares it.
    group_id: str | None = None
    concurrency: Annotated[int, msgspec.Meta(ge=1)] = 4
    partitions: Annotated[int, msgspec.Meta(ge=1)] = 4
    max_payload_bytes: Annotated[int, msgspec.Meta(ge=1)] = DEFAULT_MAX_PAYLOAD_BYTES
    # How long a stopping worker lets in-flight jobs finish before it hands them back.
    shutdown_grace_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    commit_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 0.2
    chat: list[ProviderSpec] = msgspec.field(
        default_factory=lambda: [ProviderSpec(name="local-llama")]
    )
    # Conversation memory; its Redis URL defaults to redis_url.
    memory: ProviderSpec | None = msgspec.field(default_factory=lambda: ProviderSpec(name="redis"))

    def group_for(self, kind: str) -> str:
        return self.group_id or f"{self.namespace}.{kind}.workers"


_ENV = {
    "FLEET_BOOTSTRAP_SERVERS": "bootstrap_servers",
    "FLEET_REDIS_URL": "redis_url",
    "FLEET_NAMESPACE": "namespace",
}


def load_settings(path: Path | None = None, **overrides: Any) -> WorkerSettings:
    """Settings from a TOML file (optional), then FLEET_* variables, then explicit overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = msgspec.toml.decode(path.read_bytes())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {str(path)!r} does not exist") from exc
        except msgspec.DecodeError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc
    for env, field in _ENV.items():
        if value := os.environ.get(env):
            raw[field] = value
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(raw, WorkerSettings)
    except msgspec.ValidationError as exc:
        where = f" in {str(path)!r}" if path else ""
        raise ConfigError(f"invalid worker settings{where}: {exc}") from exc
