"""Worker settings: TOML, environment, defaults per kind, and errors that name the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contracts import ConfigError
from providers.chat import chat_providers
from workers.settings import ProviderSpec, WorkerSettings, load_settings

FALLBACK = """
concurrency = 8
[[chat]]
name = "fallback"
config = { providers = [
  { name = "openai", config = { base_url = "http://127.0.0.1:8000/v1", models = ["big"] } },
  { name = "local-llama" },
] }
"""


def test_toml_builds_a_fallback_chain(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(FALLBACK)
    settings = load_settings(path)
    assert settings.concurrency_for("embed") == 8
    spec = settings.chat[0]
    provider = chat_providers.create(spec.name, spec.config)
    assert provider.capabilities.models == ("big", "smollm2-135m-instruct")


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text('namespace = "from-file"\n')
    monkeypatch.setenv("FLEET_NAMESPACE", "from-env")
    assert load_settings(path).namespace == "from-env"


def test_model_threads_come_from_the_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text("model_threads = 2\n")
    assert load_settings(path).model_threads == 2
    assert load_settings().model_threads is None  # every core
    monkeypatch.setenv("FLEET_MODEL_THREADS", "1")
    assert load_settings(path).model_threads == 1
    monkeypatch.setenv("FLEET_MODEL_THREADS", "one")
    with pytest.raises(ConfigError, match="FLEET_MODEL_THREADS='one' is not a whole number"):
        load_settings(path)
    monkeypatch.setenv("FLEET_MODEL_THREADS", "0")
    with pytest.raises(ConfigError, match="model_threads"):
        load_settings(path)


def test_defaults_per_kind() -> None:
    settings = load_settings()
    assert settings.concurrency_for("generate") == 4
    assert settings.concurrency_for("embed") == 64
    assert settings.group_for("embed") == "fleet.embed.workers"


def test_tenant_limits_load_from_their_tables_and_refuse_nonsense(tmp_path: Path) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text("[tenants.acme]\nmax_in_flight = 2\nmax_in_flight_per_session = 1\n")
    limits = load_settings(config).tenants["acme"]
    assert (limits.max_in_flight, limits.max_in_flight_per_session) == (2, 1)
    for wrong in ("max_in_flight = 0", "max_inflight = 2"):
        config.write_text(f"[tenants.acme]\n{wrong}\n")
        with pytest.raises(ConfigError, match=r"tenants"):
            load_settings(config)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("concurency = 3\n", "concurency"),
        ("concurrency = 0\n", "concurrency"),
        ("[embed_batching]\nmax_texts = 'many'\n", "embed_batching.max_texts"),
        ("session_timeout_ms = 1000\n", "session_timeout_ms"),
        ("[caller_urls]\nallowed_networks = ['10.0.0.0/33']\n", "caller_urls.allowed_networks"),
        ("audio_allow_private_addresses = true\n", "audio_allow_private_addresses"),
    ],
)
def test_bad_settings_name_the_field(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(path)


def test_missing_and_broken_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("concurrency = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)


def test_settings_reprs_hide_keys_and_passwords() -> None:
    settings = WorkerSettings(
        redis_url="redis://:hunter2@127.0.0.1:6379/0",
        chat=[ProviderSpec(name="openai", config={"api_key": "sk-abc", "models": ["m"]})],
    )
    text = repr(settings)
    assert "hunter2" not in text
    assert "sk-abc" not in text
    assert "redis://:***@127.0.0.1:6379/0" in text
    assert "config keys=[api_key, models]" in text


def test_tenant_keys_turn_verification_on_and_never_print(tmp_path: Path) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text('[tenant_keys]\nacme = "acme-signing-key"\n')
    settings = load_settings(config)
    assert settings.tenant_verification() == {"acme": b"acme-signing-key"}
    assert "acme-signing-key" not in repr(settings)
    config.write_text('verify_tenants = false\n[tenant_keys]\nacme = "acme-signing-key"\n')
    assert load_settings(config).tenant_verification() is None
    assert load_settings().tenant_verification() is None  # no keys: tenants as declared


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[vector_store]\nname = 'pgvector'\nrate_limit = {requests_per_minute = 60}\n",
         "`vector_store` ('pgvector'): rate_limit"),
        ("[memory]\nname = 'redis'\nrate_limit = {requests_per_minute = 60}\n",
         "`memory` ('redis'): rate_limit"),
        ("[[transcription]]\nname = 'local-whisper'\n[[transcription]]\nname = 'openai'\n"
         "rate_limit = {tokens_per_minute = 9000}\n",
         "`transcription[1]` ('openai'): rate_limit.tokens_per_minute"),
    ],
)  # fmt: skip
def test_a_rate_limit_that_would_be_ignored_is_refused_naming_its_entry(
    tmp_path: Path, text: str, named: str
) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_settings(path)


def test_transcription_takes_a_request_rate_limit(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text("[[transcription]]\nname = 'openai'\nrate_limit = {requests_per_minute = 50}\n")
    limit = load_settings(path).transcription[0].rate_limit
    assert limit is not None
    assert limit.requests_per_minute == 50
