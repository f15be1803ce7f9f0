"""The Anthropic provider and a fallback chain answering generate jobs through an in-process
worker over Kafka, their APIs' far side replayed from recorded responses
(httpx.MockTransport): what the caller gets back, and what reached each API."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import pytest

from contracts import ChatMessage, ErrorCode
from producer_sdk import FleetClient, FleetRequestError
from providers.chat import ChatProvider, chat_providers
from providers.chat.anthropic import AnthropicChat, AnthropicChatConfig
from providers.chat.openai_compat import OpenAIChat, OpenAIChatConfig
from providers.registry import parse_config
from providers.shared import Shared
from tests.integration.harness import serving
from tests.unit.providers import API_KEY, FakeClock, FakeSleep, Replay
from workers import WorkerSettings, build_worker
from workers.settings import ProviderSpec

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

CLAUDE = "claude-sonnet-4-5"
# Asked for through the chain, whose Anthropic link is overloaded; a stand-in answers.
CHAINED = "claude-haiku-4-5"
SUBSTITUTE = "gpt-4o-mini"
ASK = [
    ChatMessage(role="system", content="You are terse."),
    ChatMessage(role="user", content="Hello"),
]


def _recorded(
    replays: Mapping[str, Replay], make: Callable[[dict[str, Any], Replay], ChatProvider]
) -> Callable[[Mapping[str, Any], Shared], ChatProvider]:
    """A registry factory making the provider its config names, over that name's replay."""

    def create(config: Mapping[str, Any], shared: Shared) -> ChatProvider:
        return make(dict(config), replays[str(config["name"])])

    return create


def _anthropic(config: dict[str, Any], replay: Replay) -> ChatProvider:
    parsed = parse_config(config["name"], config, AnthropicChatConfig)
    return AnthropicChat(parsed, transport=replay.transport(), sleep=FakeSleep(), clock=FakeClock())


def _openai(config: dict[str, Any], replay: Replay) -> ChatProvider:
    parsed = parse_config(config["name"], config, OpenAIChatConfig)
    return OpenAIChat(parsed, transport=replay.transport(), sleep=FakeSleep(), clock=FakeClock())


@pytest.fixture
def replays(monkeypatch: pytest.MonkeyPatch) -> dict[str, Replay]:
    """The recorded far side of each provider instance, by its name; the chat registry
    makes "recorded-anthropic" and "recorded-openai" over them for this test only."""
    recorded = {
        "anthropic": Replay().sse("anthropic/messages_stream.sse"),
        "anthropic-overloaded": Replay().json(529, "anthropic/error_529.json"),
        "openai": Replay().sse("openai/chat_stream.sse"),
    }
    factories = chat_providers._factories
    monkeypatch.setitem(factories, "recorded-anthropic", _recorded(recorded, _anthropic))
    monkeypatch.setitem(factories, "recorded-openai", _recorded(recorded, _openai))
    return recorded


def _key(name: str, model: str) -> dict[str, Any]:
    return {"name": name, "api_key": API_KEY, "models": [model], "retry": {"max_attempts": 1}}


async def test_anthropic_and_a_fallback_chain_answer_through_a_worker(
    settings: WorkerSettings, client: FleetClient, replays: dict[str, Replay]
) -> None:
    chain = [
        {"name": "recorded-anthropic", "config": _key("anthropic-overloaded", CHAINED)},
        {"name": "recorded-openai", "config": _key("openai", SUBSTITUTE), "model": SUBSTITUTE},
    ]
    chat = [
        ProviderSpec(name="recorded-anthropic", config=_key("anthropic", CLAUDE)),
        ProviderSpec(name="fallback", config={"name": "chain", "providers": chain}),
    ]
    settings = msgspec.structs.replace(settings, chat=chat, memory=None)
    named = [ChatMessage(role="user", content="Hello from Ada", name="ada")]
    async with serving(await build_worker("generate", settings)):
        claude = await client.generate(ASK, model=CLAUDE, max_tokens=64)
        stood_in = await client.generate(ASK, model=CHAINED)
        # Anthropic has no place for a speaker's name: refused, never sent without it...
        with pytest.raises(FleetRequestError) as refused:
            await client.generate(named, model=CLAUDE)
        # ...and the chain passes over its Anthropic link to one that carries it.
        carried = await client.generate(named, model=CHAINED)

    assert claude.text == "Hello! How can I help you today?"
    assert claude.model == CLAUDE
    assert claude.finish_reason == "stop"
    assert (claude.usage.prompt_tokens, claude.usage.completion_tokens) == (25, 12)
    (sent,) = replays["anthropic"].requests  # the refused one never reached the API
    assert sent.headers["x-api-key"] == API_KEY
    body = json.loads(sent.content)
    assert (body["model"], body["system"], body["max_tokens"]) == (CLAUDE, "You are terse.", 64)
    assert body["messages"] == [{"role": "user", "content": "Hello"}]

    assert stood_in.text == "Hello! How can I help?"
    assert stood_in.model == SUBSTITUTE, "the model that answered, not the one asked for"
    assert len(replays["anthropic-overloaded"].requests) == 1
    first, second = (json.loads(r.content) for r in replays["openai"].requests)
    assert first["model"] == SUBSTITUTE

    assert refused.value.code is ErrorCode.INVALID_INPUT
    assert "speaker names" in str(refused.value)
    assert carried.model == SUBSTITUTE
    assert second["messages"] == [{"role": "user", "content": "Hello from Ada", "name": "ada"}]
