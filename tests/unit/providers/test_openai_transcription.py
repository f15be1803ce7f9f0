"""The OpenAI-compatible transcription provider against a recorded verbose_json answer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from contracts.errors import ConfigError, ErrorCode
from providers.errors import ProviderError
from providers.registry import parse_config
from providers.transcription import (
    Segment,
    TranscriptionDone,
    TranscriptionEvent,
    TranscriptionProvider,
    transcription_providers,
)
from providers.transcription.openai_compat import (
    OpenAITranscription,
    OpenAITranscriptionConfig,
    audio_filename,
)
from tests.conformance.transcription import TranscriptionProviderConformance
from tests.unit.providers import API_KEY, FakeClock, FakeSleep, Replay

MODEL = "whisper-1"
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(64)


def make(
    replay: Replay, *, sleep: FakeSleep | None = None, **overrides: Any
) -> OpenAITranscription:
    raw: dict[str, Any] = {"api_key": API_KEY, "models": [MODEL], **overrides}
    config = parse_config("openai", raw, OpenAITranscriptionConfig)
    return OpenAITranscription(
        config, transport=replay.transport(), sleep=sleep or FakeSleep(), clock=FakeClock()
    )


async def transcribe(
    provider: OpenAITranscription, audio: bytes = WAV, language: str | None = "en"
) -> list[TranscriptionEvent]:
    try:
        return [e async for e in provider.transcribe(audio, model=MODEL, language=language)]
    finally:
        await provider.aclose()


async def test_segments_then_done() -> None:
    replay = Replay().json(200, "openai/transcription_verbose.json")
    events = await transcribe(make(replay))
    assert events[:-1] == [
        Segment(
            start_s=0.0,
            end_s=pytest.approx(3.32),  # type: ignore[arg-type]
            text="The beach was a popular spot on a hot summer day.",
        ),
        Segment(
            start_s=pytest.approx(3.32),  # type: ignore[arg-type]
            end_s=pytest.approx(8.47),  # type: ignore[arg-type]
            text="People were swimming in the ocean, building sandcastles, and playing beach "
            "volleyball.",
        ),
    ]
    done = events[-1]
    assert isinstance(done, TranscriptionDone)
    assert done.text.startswith("The beach was a popular spot")
    assert done.language == "en"
    assert done.duration_s == pytest.approx(8.47)

    request = replay.requests[0]
    assert str(request.url) == "https://api.openai.com/v1/audio/transcriptions"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    content = request.content
    assert b'name="model"\r\n\r\nwhisper-1' in content
    assert b'name="response_format"\r\n\r\nverbose_json' in content
    assert b'name="language"\r\n\r\nen' in content
    assert b'name="file"; filename="audio.wav"' in content
    assert WAV in content


async def test_plain_json_format_gives_the_text_alone() -> None:
    replay = Replay().raw(200, b'{"text": "Hello there.", "usage": {"type": "tokens"}}')
    events = await transcribe(make(replay, response_format="json"), language=None)
    assert events == [TranscriptionDone(text="Hello there.")]
    assert b'name="language"' not in replay.requests[0].content


def test_file_name_follows_the_audio_container() -> None:
    assert audio_filename(b"ID3\x04rest") == "audio.mp3"
    assert audio_filename(b"OggS\x00rest") == "audio.ogg"
    assert audio_filename(b"fLaCrest") == "audio.flac"
    assert audio_filename(b"\x00\x00\x00\x20ftypM4A ") == "audio.m4a"
    assert audio_filename(b"\x1a\x45\xdf\xa3rest") == "audio.webm"


async def test_401_is_auth() -> None:
    replay = Replay().json(401, "openai/error_401_invalid_api_key.json")
    with pytest.raises(ProviderError) as info:
        await transcribe(make(replay))
    assert info.value.code is ErrorCode.AUTH
    assert len(replay.requests) == 1


async def test_429_waits_for_retry_after() -> None:
    replay = (
        Replay()
        .json(429, "openai/error_429_rate_limit.json", {"retry-after-ms": "250"})
        .json(200, "openai/transcription_verbose.json")
    )
    sleep = FakeSleep()
    events = await transcribe(make(replay, sleep=sleep, retry={"base_delay_s": 0.01}))
    assert isinstance(events[-1], TranscriptionDone)
    assert sleep.delays == [0.25]


async def test_500_is_provider_down_after_retries() -> None:
    replay = Replay().json(500, "openai/error_500.json")
    with pytest.raises(ProviderError) as info:
        await transcribe(make(replay, retry={"max_attempts": 2}))
    assert info.value.code is ErrorCode.PROVIDER_DOWN
    assert len(replay.requests) == 2


async def test_read_timeout_is_timeout() -> None:
    replay = Replay().timeout()
    with pytest.raises(ProviderError) as info:
        await transcribe(make(replay, retry={"max_attempts": 1}))
    assert info.value.code is ErrorCode.TIMEOUT


async def test_malformed_body_is_a_typed_unexpected_response() -> None:
    replay = Replay().raw(200, b'{"text": "cut off', content_type="application/json")
    with pytest.raises(ProviderError, match="not valid JSON") as info:
        await transcribe(make(replay, retry={"max_attempts": 1}))
    assert info.value.code is ErrorCode.UNEXPECTED_RESPONSE


async def test_oversized_or_empty_audio_is_refused_before_sending() -> None:
    replay = Replay()
    with pytest.raises(ProviderError) as big:
        await transcribe(make(replay, max_audio_bytes=10))
    assert big.value.code is ErrorCode.INVALID_INPUT
    with pytest.raises(ProviderError) as empty:
        await transcribe(make(replay), audio=b"")
    assert empty.value.code is ErrorCode.INVALID_INPUT
    assert replay.requests == []


async def test_api_key_never_leaks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    replay = (
        Replay()
        .json(500, "openai/error_500.json")
        .json(401, "openai/error_401_invalid_api_key.json")
    )
    provider = make(replay)
    shown = repr(provider)
    with pytest.raises(ProviderError) as info:
        await transcribe(provider)
    assert "retry" in caplog.text
    for text in (shown, str(info.value), caplog.text):
        assert API_KEY not in text


async def test_registered_and_conforming() -> None:
    provider = transcription_providers.create("openai", {"models": [MODEL]})
    try:
        assert isinstance(provider, OpenAITranscription)
        assert isinstance(provider, TranscriptionProvider)
    finally:
        await provider.aclose()
    with pytest.raises(ConfigError, match="response_format"):
        transcription_providers.create("openai", {"models": [MODEL], "response_format": "srt"})


async def test_detected_language_is_reported_when_none_was_asked_for() -> None:
    replay = Replay().json(200, "openai/transcription_verbose.json")
    events = await transcribe(make(replay), language=None)
    done = events[-1]
    assert isinstance(done, TranscriptionDone)
    assert done.language == "english"
    assert b'name="language"' not in replay.requests[0].content


class TestConformance(TranscriptionProviderConformance):
    model = MODEL
    expected_words = ("beach", "summer", "volleyball")

    @pytest.fixture
    async def provider(self) -> AsyncIterator[TranscriptionProvider]:
        provider = make(Replay().json(200, "openai/transcription_verbose.json"))
        yield provider
        await provider.aclose()

    @pytest.fixture
    def speech(self) -> bytes:
        return WAV
