"""local-whisper held to the transcription suite, on the speech sample the demo ships (so
it needs no espeak-ng)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from providers.transcription import TranscriptionProvider, transcription_providers
from providers.transcription.local_whisper import WHISPER_TINY_EN
from tests.conformance.transcription import TranscriptionProviderConformance
from workers.ops.demo import SPEECH_SAMPLE

pytestmark = [pytest.mark.model]


@pytest.fixture(scope="module")
async def whisper() -> AsyncIterator[TranscriptionProvider]:
    provider = transcription_providers.create("local-whisper", {})
    await provider.load()
    yield provider
    await provider.aclose()


class TestConformance(TranscriptionProviderConformance):
    model = WHISPER_TINY_EN
    expected_words = ("kafka", "jobs", "workers")

    @pytest.fixture
    def provider(self, whisper: TranscriptionProvider) -> TranscriptionProvider:
        return whisper

    @pytest.fixture
    def speech(self) -> bytes:
        return SPEECH_SAMPLE.read_bytes()
