"""The provider registry: registration, creation, clear errors, protocol conformance."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts import ConfigError, ErrorCode
from providers import ProviderError, Registry, parse_config
from providers.chat import ChatProvider, chat_providers
from providers.chat.local_llama import LocalLlamaChat
from providers.embeddings import embedding_providers
from providers.memory import MemoryStore, memory_stores
from providers.redis_client import RedisPool
from providers.router import ModelRouter
from providers.shared import Shared
from providers.speech import speech_providers
from providers.transcription import transcription_providers
from providers.vectorstores import vector_stores
from tests.conformance.chat import ChatProviderConformance
from tests.conftest import REPO


class _Config(msgspec.Struct, forbid_unknown_fields=True):
    size: int


def _factory(config: Mapping[str, Any], shared: Shared) -> int:
    return parse_config("toy", config, _Config).size


def test_register_create_names() -> None:
    registry: Registry[int] = Registry("toy")
    registry.register("b", _factory)
    registry.register("a", _factory)
    assert registry.names() == ["a", "b"]
    assert registry.create("a", {"size": 3}) == 3


def test_unknown_name_lists_the_known_ones() -> None:
    registry: Registry[int] = Registry("toy")
    registry.register("only", _factory)
    with pytest.raises(ConfigError, match=r"unknown toy provider 'nope'; registered: only"):
        registry.create("nope")


def test_duplicate_registration_is_refused() -> None:
    registry: Registry[int] = Registry("toy")
    registry.register("a", _factory)
    with pytest.raises(ConfigError, match="already registered"):
        registry.register("a", _factory)


def test_bad_config_names_provider_and_field() -> None:
    registry: Registry[int] = Registry("toy")
    registry.register("a", _factory)
    with pytest.raises(ConfigError, match=r"provider 'toy'.*\$\.size"):
        registry.create("a", {"size": "big"})
    with pytest.raises(ConfigError, match="colour"):
        registry.create("a", {"size": 1, "colour": "red"})


def test_local_llama_config_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"'local-llama'.*n_ctx"):
        chat_providers.create("local-llama", {"n_ctx": 10})
    with pytest.raises(ConfigError, match="does not exist"):
        chat_providers.create("local-llama", {"model_path": "/nonexistent.gguf"})


def test_builtin_providers_satisfy_their_protocols() -> None:
    assert "local-llama" in chat_providers.names()
    assert isinstance(chat_providers.create("local-llama"), ChatProvider)
    assert "redis" in memory_stores.names()
    assert isinstance(
        memory_stores.create("redis", {}, Shared(redis=RedisPool("redis://127.0.0.1:1/0"))),
        MemoryStore,
    )


def test_a_redis_provider_without_the_process_pool_says_what_it_needs() -> None:
    with pytest.raises(ConfigError, match="'redis' needs Redis"):
        memory_stores.create("redis")


def test_router_names_the_unknown_model_and_what_is_served() -> None:
    router = ModelRouter("chat", [chat_providers.create("local-llama")])
    assert isinstance(router.resolve("smollm2-135m-instruct"), LocalLlamaChat)
    with pytest.raises(ProviderError) as info:
        router.resolve("gpt-9")
    assert info.value.code is ErrorCode.NOT_FOUND
    assert "unknown chat model 'gpt-9'" in str(info.value)
    assert "smollm2-135m-instruct" in str(info.value)
    with pytest.raises(ProviderError, match="chat provider 'openai' is not configured"):
        router.resolve("smollm2-135m-instruct", provider="openai")


def test_third_party_providers_register_through_entry_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "acme_fleet_plugin.py").write_text(
        "def create(config, shared):\n    return ('acme', dict(config))\n"
    )
    dist = tmp_path / "acme_fleet_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-fleet-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[fleet.providers.toy-plugins]\nacme = acme_fleet_plugin:create\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry[tuple[str, dict[str, Any]]] = Registry("toy-plugins")
    assert registry.names() == ["acme"]
    assert registry.create("acme", {"k": 1}) == ("acme", {"k": 1})


# Where each built-in provider's behaviour is tested: a new provider needs a line here, and
# the module it names, before this test passes.
PROVIDER_TESTS = {
    ("chat", "local-llama"): "tests/unit/providers_local/test_local_llama.py",
    ("chat", "openai"): "tests/unit/providers/test_openai_chat.py",
    ("chat", "anthropic"): "tests/unit/providers/test_anthropic_chat.py",
    ("chat", "fallback"): "tests/unit/providers/test_fallback.py",
    ("embeddings", "local-minilm"): "tests/unit/providers_local/test_local_minilm.py",
    ("embeddings", "sentence-transformers"):
        "tests/unit/providers_local/test_sentence_transformers.py",
    ("embeddings", "openai"): "tests/unit/providers/test_openai_embeddings.py",
    ("transcription", "local-whisper"): "tests/unit/providers_local/test_local_whisper.py",
    ("transcription", "openai"): "tests/unit/providers/test_openai_transcription.py",
    ("speech", "local-espeak"): "tests/unit/providers_local/test_local_espeak.py",
    ("speech", "local-piper"): "tests/unit/providers_local/test_local_piper.py",
    ("speech", "openai"): "tests/unit/providers/test_openai_speech.py",
    ("vector store", "redis"): "tests/unit/providers_local/test_redis_vectors.py",
    ("vector store", "pgvector"): "tests/unit/providers_local/test_pgvector.py",
    ("vector store", "qdrant"): "tests/unit/providers_local/test_qdrant.py",
    ("memory", "redis"): "tests/unit/test_redis_memory.py",
}  # fmt: skip


def test_every_registered_provider_has_its_tests() -> None:
    registries: dict[str, Registry[Any]] = {
        "chat": chat_providers,
        "embeddings": embedding_providers,
        "transcription": transcription_providers,
        "speech": speech_providers,
        "vector store": vector_stores,
        "memory": memory_stores,
    }
    registered = {(category, name) for category, r in registries.items() for name in r.names()}
    assert registered == set(PROVIDER_TESTS)
    missing = [path for path in PROVIDER_TESTS.values() if not (REPO / path).is_file()]
    assert missing == []


def _concrete_subclasses(base: type[ChatProviderConformance]) -> list[type[Any]]:
    found: list[type[Any]] = []
    for sub in base.__subclasses__():
        if hasattr(sub, "model"):  # a suite run, not another abstract layer
            found.append(sub)
        found.extend(_concrete_subclasses(sub))
    return found


def test_every_registered_chat_provider_runs_the_chat_conformance_suite() -> None:
    """A chat provider in the registry (providers/chat/__init__.py) without a subclass of
    ChatProviderConformance (tests/conformance/chat.py) somewhere under tests/ fails here:
    a new provider cannot skip the suite."""
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        if "ChatProviderConformance" in path.read_text():
            import_module(".".join(path.relative_to(REPO).with_suffix("").parts))
    subclasses = _concrete_subclasses(ChatProviderConformance)
    assert [s for s in subclasses if not hasattr(s, "registry_name")] == []
    covered = {sub.registry_name for sub in subclasses}
    registered = set(chat_providers.names())
    assert registered - covered == set(), "chat providers without a conformance subclass"
    assert covered <= registered, "a conformance subclass names a provider not registered"
