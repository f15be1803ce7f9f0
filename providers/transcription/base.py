"""What a speech-to-text provider is: audio bytes in, segments streamed, full text last."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

import msgspec


class TranscriptionCapabilities(msgspec.Struct, frozen=True, kw_only=True):
    models: tuple[str, ...]
    streaming: bool = True
    languages: tuple[str, ...] | None = None  # None: any the model knows


class Segment(msgspec.Struct, frozen=True, kw_only=True):
    start_s: float
    end_s: float
    text: str


class TranscriptionDone(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    language: str | None = None
    duration_s: float | None = None


TranscriptionEvent = Segment | TranscriptionDone


@runtime_checkable
class TranscriptionProvider(Protocol):
    name: str

    @property
    def capabilities(self) -> TranscriptionCapabilities: ...

    def transcribe(
        self, audio: bytes, *, model: str, language: str | None = None
    ) -> AsyncIterator[TranscriptionEvent]:
        """Yield segments as they are decoded, then exactly one TranscriptionDone."""
        ...

    async def load(self) -> None: ...

    async def health(self) -> bool: ...

    async def aclose(self) -> None: ...
