"""local-piper held to the speech suite, where the optional extra `piper` is installed
(GPL-3.0: no default install has it, docs/decisions/0041-speech-voices.md); without it the
provider is still registered, and creating it says which extra to install."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator

import pytest

from contracts.errors import ConfigError
from providers.speech import SpeechParams, SpeechProvider, speech_providers
from providers.speech.local_piper import PIPER_JOE_MODEL
from tests.conformance.speech import SpeechProviderConformance

HAS_PIPER = importlib.util.find_spec("piper") is not None
needs_piper = pytest.mark.skipif(not HAS_PIPER, reason="the optional extra `piper`")


@pytest.mark.skipif(HAS_PIPER, reason="the extra is installed here")
def test_without_the_extra_creating_it_names_the_extra() -> None:
    with pytest.raises(ConfigError, match=r"ai-job-fleet\[piper\]"):
        speech_providers.create("local-piper", {})


@pytest.fixture(scope="module")
async def piper() -> AsyncIterator[SpeechProvider]:
    provider = speech_providers.create("local-piper", {})
    await provider.load()
    yield provider
    await provider.aclose()


@needs_piper
@pytest.mark.model
async def test_the_joe_voice_speaks_at_its_own_rate(piper: SpeechProvider) -> None:
    params = SpeechParams(model=PIPER_JOE_MODEL, voice="joe", speed=1.5)
    audio = b"".join([piece async for piece in piper.synthesize("Hello there.", params)])
    assert piper.capabilities.sample_rate == 22_050
    assert len(audio) / 2 / 22_050 > 0.3


@needs_piper
@pytest.mark.model
class TestConformance(SpeechProviderConformance):
    model = PIPER_JOE_MODEL
    voice = "joe"

    @pytest.fixture
    def provider(self, piper: SpeechProvider) -> SpeechProvider:
        return piper

    def released(self, provider: SpeechProvider) -> bool:
        # Stopped early, the synthesis thread was joined inside the lock: the next call
        # gets the model at once.
        return not provider._lock.locked()  # type: ignore[attr-defined]
