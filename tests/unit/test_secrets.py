"""Secrets stay hidden: in reprs, formatting, logs, encoders, pickles and parsed configs."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import msgspec
import pytest

from contracts import ConfigError
from contracts.secrets import Secret
from providers import parse_config
from workers.settings import load_settings

KEY = "sk-live-0123456789abcdef"


class _Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    api_key: Secret
    base_url: str = "https://api.example.com/v1"
    timeout_s: float = 30.0


def test_reveal_is_the_only_way_out() -> None:
    secret = Secret(KEY)
    assert secret.reveal() == KEY
    shown = [
        repr(secret),
        str(secret),
        format(secret),
        format(secret, ">40"),
        f"{secret}",
        f"{secret!r}",
        f"{secret!s}",
        f"{secret:>40}",
        "{}".format(secret),  # noqa: UP032 (str.format is its own code path)
        "%s %r" % (secret, secret),  # noqa: UP031 (and so is %-formatting)
        str([secret]),
        repr({"key": secret}),
    ]
    assert all(KEY not in text for text in shown), shown
    assert all("*" in text for text in shown)
    assert not hasattr(secret, "__dict__")  # nothing for vars() to show


def test_logging_masks_the_value(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.secrets")
    secret = Secret(KEY)
    with caplog.at_level(logging.DEBUG, logger="tests.secrets"):
        logger.info("key %s, repr %r", secret, secret)
        logger.warning("config: %s", _Config(api_key=secret))
        try:
            raise ValueError(secret)
        except ValueError:
            logger.exception("call failed with %s", secret)
    assert len(caplog.records) == 3
    assert KEY not in caplog.text
    assert all(KEY not in record.getMessage() for record in caplog.records)
    assert "ValueError: **********" in caplog.text


@pytest.mark.parametrize(
    "encode", [msgspec.json.encode, msgspec.msgpack.encode, msgspec.to_builtins]
)
def test_msgspec_refuses_to_encode_a_secret(encode: object) -> None:
    assert callable(encode)
    for value in (Secret(KEY), {"api_key": Secret(KEY)}, _Config(api_key=Secret(KEY))):
        with pytest.raises(TypeError, match="unsupported") as caught:
            encode(value)
        assert KEY not in str(caught.value)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_secret_cannot_be_pickled(protocol: int) -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Secret(KEY), protocol=protocol)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(_Config(api_key=Secret(KEY)), protocol=protocol)


def test_parse_config_builds_a_secret_that_stays_hidden() -> None:
    config = parse_config("toy", {"api_key": KEY, "timeout_s": 5}, _Config)
    assert isinstance(config.api_key, Secret)
    assert config.api_key.reveal() == KEY
    assert config.timeout_s == 5.0
    assert KEY not in repr(config)
    assert KEY not in str(config)
    assert KEY not in f"{config}"


def test_config_errors_do_not_echo_the_key() -> None:
    with pytest.raises(ConfigError, match=r"base_url") as caught:
        parse_config("toy", {"api_key": KEY, "base_url": 5}, _Config)
    assert KEY not in str(caught.value)
    with pytest.raises(ConfigError, match=r"api_key"):
        parse_config("toy", {}, _Config)


def test_a_non_string_key_is_a_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"api_key"):
        parse_config("toy", {"api_key": 12345}, _Config)


def test_secrets_come_from_the_environment_or_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_TEST_API_KEY", KEY)
    mounted = tmp_path / "api-key"
    mounted.write_text(KEY + "\n")  # as a secret mount or `echo` writes it
    from_env = parse_config("p", {"api_key": "env:FLEET_TEST_API_KEY"}, _Config)
    from_file = parse_config("p", {"api_key": f"file:{mounted}"}, _Config)
    assert from_env.api_key.reveal() == KEY
    assert from_file.api_key.reveal() == KEY


def test_a_missing_variable_or_file_is_named_and_the_secret_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLEET_TEST_MISSING", raising=False)
    with pytest.raises(ConfigError, match=r"'FLEET_TEST_MISSING' is not set.*api_key"):
        parse_config("p", {"api_key": "env:FLEET_TEST_MISSING"}, _Config)
    absent = tmp_path / "nope"
    with pytest.raises(ConfigError, match=r"secret file .*nope.* cannot be read"):
        parse_config("p", {"api_key": f"file:{absent}"}, _Config)


def test_tenant_keys_in_the_settings_come_from_files_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "acme.key"
    key_file.write_text("acme-signing-key\n")
    monkeypatch.setenv("GLOBEX_KEY", "globex-signing-key")
    config = tmp_path / "fleet.toml"
    config.write_text(f'[tenant_keys]\nacme = "file:{key_file}"\nglobex = "env:GLOBEX_KEY"\n')
    keys = load_settings(config).tenant_verification()
    assert keys == {"acme": b"acme-signing-key", "globex": b"globex-signing-key"}
