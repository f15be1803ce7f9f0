"""What every transcription provider must do, asserted the same way for each.

A subclass sets ``model`` and provides ``provider`` (ready to transcribe ``speech`` once)
and ``speech``: audio bytes in which the words ``expected_words`` are spoken.
"""

from __future__ import annotations

from typing import ClassVar

import pytest

from contracts.errors import ErrorCode
from providers.errors import ProviderError
from providers.transcription import (
    Segment,
    TranscriptionDone,
    TranscriptionEvent,
    TranscriptionProvider,
)


class TranscriptionProviderConformance:
    model: ClassVar[str]
    expected_words: ClassVar[tuple[str, ...]]

    @pytest.fixture
    def provider(self) -> TranscriptionProvider:
        raise NotImplementedError("a conformance subclass provides `provider`")

    @pytest.fixture
    def speech(self) -> bytes:
        raise NotImplementedError("a conformance subclass provides `speech`")

    async def _events(
        self, provider: TranscriptionProvider, audio: bytes, model: str | None = None
    ) -> list[TranscriptionEvent]:
        stream = provider.transcribe(audio, model=model or self.model, language="en")
        return [event async for event in stream]

    def test_satisfies_the_protocol(self, provider: TranscriptionProvider) -> None:
        assert isinstance(provider, TranscriptionProvider)
        assert self.model in provider.capabilities.models

    async def test_segments_then_exactly_one_done_with_the_words(
        self, provider: TranscriptionProvider, speech: bytes
    ) -> None:
        events = await self._events(provider, speech)
        assert all(isinstance(e, Segment) for e in events[:-1])
        done = events[-1]
        assert isinstance(done, TranscriptionDone)
        text = done.text.lower()
        for word in self.expected_words:
            assert word in text
        segments = [e for e in events if isinstance(e, Segment)]
        assert [s.start_s for s in segments] == sorted(s.start_s for s in segments)

    async def test_an_unknown_model_is_not_found(
        self, provider: TranscriptionProvider, speech: bytes
    ) -> None:
        with pytest.raises(ProviderError) as info:
            await self._events(provider, speech, model="no-such-model")
        assert info.value.code is ErrorCode.NOT_FOUND

    async def test_empty_audio_is_invalid_input(self, provider: TranscriptionProvider) -> None:
        with pytest.raises(ProviderError) as info:
            await self._events(provider, b"")
        assert info.value.code is ErrorCode.INVALID_INPUT
