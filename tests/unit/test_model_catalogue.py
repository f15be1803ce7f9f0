"""The model catalogue: `[[models]]` in the settings, entries per model and per provider,
capabilities that only narrow, and prices."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.errors import ConfigError
from contracts.generate import ChatMessage, ToolSpec
from contracts.usage import Usage
from providers.catalogue import ModelCatalogue, ModelEntry
from providers.chat.base import ChatCapabilities, ChatParams
from providers.chat.support import unsupported
from workers.settings import load_settings


def test_an_entry_for_the_provider_wins_field_by_field() -> None:
    catalogue = ModelCatalogue(
        [
            ModelEntry(name="m", context_tokens=8192, input_usd_per_mtok=1.0),
            ModelEntry(name="m", provider="cheap", input_usd_per_mtok=0.5),
        ]
    )
    cheap = catalogue.entry("cheap", "m")
    assert cheap is not None
    assert (cheap.context_tokens, cheap.input_usd_per_mtok) == (8192, 0.5)
    assert catalogue.entry("other", "m") == ModelEntry(
        name="m", context_tokens=8192, input_usd_per_mtok=1.0
    )
    assert catalogue.entry("other", "unknown") is None


def test_a_model_listed_twice_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model 'm' for provider 'p' is listed twice"):
        ModelCatalogue([ModelEntry(name="m", provider="p"), ModelEntry(name="m", provider="p")])
    path = tmp_path / "fleet.toml"
    path.write_text('[[models]]\nname = "m"\n[[models]]\nname = "m"\n')
    with pytest.raises(ConfigError, match="listed twice"):
        load_settings(path)
    path.write_text('[[models]]\nname = "m"\ncontext = 5\n')
    with pytest.raises(ConfigError, match="context"):
        load_settings(path)


def test_prices_make_a_cost_only_when_every_token_has_one() -> None:
    both = ModelEntry(name="m", input_usd_per_mtok=2.5, output_usd_per_mtok=10.0)
    usage = Usage(prompt_tokens=1_000, completion_tokens=500)
    assert both.cost_usd(usage) == pytest.approx(0.0075)
    input_only = ModelEntry(name="e", input_usd_per_mtok=0.02)
    assert input_only.cost_usd(Usage(prompt_tokens=50_000)) == pytest.approx(0.001)
    assert input_only.cost_usd(usage) is None  # the answer's tokens have no price
    assert ModelEntry(name="n").cost_usd(usage) is None
    catalogue = ModelCatalogue([both])
    assert catalogue.priced("any", "m", usage).cost_usd == pytest.approx(0.0075)
    assert catalogue.priced("any", "x", usage) is usage


def test_speech_is_priced_per_character() -> None:
    catalogue = ModelCatalogue(
        [
            ModelEntry(name="tts-1", input_usd_per_mchar=15.0),
            ModelEntry(name="tts-1", provider="azure", input_usd_per_mchar=16.5),
        ]
    )
    assert catalogue.character_cost_usd("openai", "tts-1", 2000) == pytest.approx(0.03)
    assert catalogue.character_cost_usd("azure", "tts-1", 2000) == pytest.approx(0.033)
    assert catalogue.character_cost_usd("openai", "espeak-ng", 2000) is None
    # A price per character says nothing of tokens.
    assert catalogue.priced("openai", "tts-1", Usage(prompt_tokens=10)).cost_usd is None


def test_the_catalogue_narrows_a_provider_and_never_widens_it() -> None:
    provider = ChatCapabilities(
        models=("a", "b"),
        tools=True,
        vision=False,
        json_schema=True,
        max_context_tokens=32768,
        per_model={
            "a": ModelEntry(name="a", tools=False, vision=True, context_tokens=8192),
            "b": ModelEntry(name="b", context_tokens=65536),
        },
    )
    a = provider.for_model("a")
    assert (a.tools, a.vision, a.json_schema, a.max_context_tokens) == (False, False, True, 8192)
    assert provider.for_model("b").max_context_tokens == 32768  # the server's own is smaller
    assert provider.for_model("c") is provider


def test_what_a_model_cannot_do_is_refused_by_name_even_where_its_provider_can() -> None:
    provider = ChatCapabilities(
        models=("a", "b"), tools=True, per_model={"a": ModelEntry(name="a", tools=False)}
    )
    messages = [ChatMessage(role="user", content="Weather?")]
    tools = [ToolSpec(name="get_weather")]
    refused = unsupported(provider, messages, ChatParams(model="a", tools=tools))
    assert refused is not None
    assert "does not support tools" in refused
    assert unsupported(provider, messages, ChatParams(model="b", tools=tools)) is None
