"""What every speech provider must do, asserted the same way for each.

A subclass sets ``model`` (one that takes no instructions) and ``voice``, and provides
``provider`` (ready to speak) and ``released``: whether a stream stopped early left nothing
running (a process, an open response).
"""

from __future__ import annotations

from contextlib import aclosing
from typing import ClassVar

import pytest

from contracts.errors import ErrorCode
from providers.errors import ProviderError
from providers.speech import SpeechParams, SpeechProvider

TEXT = "The fleet speaks, clause by clause, while the sentence is still being written."


class SpeechProviderConformance:
    model: ClassVar[str]
    voice: ClassVar[str]

    @pytest.fixture
    def provider(self) -> SpeechProvider:
        raise NotImplementedError("a conformance subclass provides `provider`")

    def released(self, provider: SpeechProvider) -> bool:
        raise NotImplementedError("a conformance subclass says what stopping early leaves")

    def params(self, **changes: object) -> SpeechParams:
        fields: dict[str, object] = {"model": self.model, "voice": self.voice, **changes}
        return SpeechParams(**fields)  # type: ignore[arg-type]

    async def _refusal(self, provider: SpeechProvider, params: SpeechParams) -> ProviderError:
        with pytest.raises(ProviderError) as info:
            await anext(provider.synthesize(TEXT, params))  # refused before any audio
        return info.value

    def test_satisfies_the_protocol(self, provider: SpeechProvider) -> None:
        assert isinstance(provider, SpeechProvider)
        capabilities = provider.capabilities
        assert self.model in capabilities.models
        assert self.voice in capabilities.voices
        assert capabilities.sample_rate >= 8000

    async def test_streams_whole_samples_of_audio(self, provider: SpeechProvider) -> None:
        pieces = [piece async for piece in provider.synthesize(TEXT, self.params())]
        assert pieces
        assert all(piece and len(piece) % 2 == 0 for piece in pieces)
        seconds = sum(map(len, pieces)) / 2 / provider.capabilities.sample_rate
        assert seconds > 0.1

    async def test_an_unknown_model_is_not_found(self, provider: SpeechProvider) -> None:
        error = await self._refusal(provider, self.params(model="no-such-model"))
        assert error.code is ErrorCode.NOT_FOUND

    async def test_an_unknown_voice_is_refused_naming_the_voices(
        self, provider: SpeechProvider
    ) -> None:
        error = await self._refusal(provider, self.params(voice="nobody"))
        assert error.code is ErrorCode.INVALID_INPUT
        assert "'nobody'" in error.detail
        assert self.voice in error.detail

    async def test_a_speed_out_of_its_range_is_refused_naming_the_range(
        self, provider: SpeechProvider
    ) -> None:
        too_fast = provider.capabilities.max_speed + 0.5
        error = await self._refusal(provider, self.params(speed=too_fast))
        assert error.code is ErrorCode.INVALID_INPUT
        assert f"{provider.capabilities.max_speed:.3g}" in error.detail

    async def test_instructions_are_refused_by_a_model_that_takes_none(
        self, provider: SpeechProvider
    ) -> None:
        assert self.model not in provider.capabilities.instruction_models
        error = await self._refusal(provider, self.params(instructions="Speak softly."))
        assert error.code is ErrorCode.INVALID_INPUT
        assert "instructions" in error.detail

    async def test_stopping_after_the_first_audio_leaves_nothing_running(
        self, provider: SpeechProvider
    ) -> None:
        async with aclosing(provider.synthesize(TEXT, self.params())) as stream:
            async for piece in stream:
                assert piece
                break
        assert self.released(provider)
