"""The OpenAI-compatible speech provider against a PCM body in the API's shape, streamed in
odd-sized pieces as a network delivers them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from contracts.errors import ErrorCode
from providers.errors import ProviderError
from providers.registry import parse_config
from providers.speech import SpeechParams, SpeechProvider, speech_providers
from providers.speech.openai_compat import OpenAISpeech, OpenAISpeechConfig
from tests.conformance.speech import SpeechProviderConformance
from tests.unit.providers import API_KEY, ChunkedStream, FakeClock, FakeSleep, Replay, fixture

MODELS = ["tts-1", "gpt-4o-mini-tts"]
PCM = fixture("openai/speech_pcm_handwritten.pcm")


def pcm_body(replay: Replay, chunk_size: int = 1001) -> Replay:
    def step(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-type": "audio/pcm"},
            stream=ChunkedStream(PCM, chunk_size, replay),
        )

    return replay.then(step)


def make(replay: Replay, **overrides: Any) -> OpenAISpeech:
    raw: dict[str, Any] = {"api_key": API_KEY, "models": MODELS, **overrides}
    config = parse_config("openai", raw, OpenAISpeechConfig)
    return OpenAISpeech(config, transport=replay.transport(), sleep=FakeSleep(), clock=FakeClock())


async def speak(provider: OpenAISpeech, params: SpeechParams) -> bytes:
    try:
        return b"".join([piece async for piece in provider.synthesize("Hello there.", params)])
    finally:
        await provider.aclose()


async def test_asks_for_pcm_in_the_api_shape_and_keeps_samples_whole() -> None:
    replay = pcm_body(Replay())
    params = SpeechParams(model="gpt-4o-mini-tts", voice="coral", speed=1.5, instructions="Calm.")
    audio = await speak(make(replay), params)
    assert audio == PCM  # pieces of 1001 bytes regrouped into whole 16-bit samples
    [request] = replay.requests
    assert request.url.path == "/v1/audio/speech"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert json.loads(request.content) == {
        "model": "gpt-4o-mini-tts",
        "input": "Hello there.",
        "voice": "coral",
        "response_format": "pcm",
        "speed": 1.5,
        "instructions": "Calm.",
    }


async def test_instructions_are_left_out_when_not_given() -> None:
    replay = pcm_body(Replay())
    await speak(make(replay), SpeechParams(model="tts-1", voice="alloy"))
    assert "instructions" not in json.loads(replay.requests[0].content)


async def test_429_is_retried_before_the_first_audio() -> None:
    replay = pcm_body(Replay().json(429, "openai/error_429_rate_limit.json"))
    audio = await speak(
        make(replay, retry={"base_delay_s": 0.01}), SpeechParams(model="tts-1", voice="alloy")
    )
    assert audio == PCM
    assert len(replay.requests) == 2


async def test_401_is_auth_and_the_key_never_shows() -> None:
    replay = Replay().json(401, "openai/error_401_invalid_api_key.json")
    with pytest.raises(ProviderError) as info:
        await speak(make(replay), SpeechParams(model="tts-1", voice="alloy"))
    assert info.value.code is ErrorCode.AUTH
    assert API_KEY not in str(info.value)


async def test_a_json_body_instead_of_audio_is_an_unexpected_response() -> None:
    replay = Replay().raw(200, b'{"ok": true}')
    with pytest.raises(ProviderError) as info:
        await speak(make(replay), SpeechParams(model="tts-1", voice="alloy"))
    assert info.value.code is ErrorCode.UNEXPECTED_RESPONSE


async def test_registered() -> None:
    provider = speech_providers.create("openai", {"models": MODELS})
    try:
        assert isinstance(provider, OpenAISpeech)
    finally:
        await provider.aclose()


class TestConformance(SpeechProviderConformance):
    model = "tts-1"
    voice = "alloy"

    @pytest.fixture
    async def provider(self) -> AsyncIterator[SpeechProvider]:
        self.replay = pcm_body(Replay(), chunk_size=512)
        provider = make(self.replay)
        yield provider
        await provider.aclose()

    def released(self, provider: SpeechProvider) -> bool:
        return self.replay.open_responses() == 0
