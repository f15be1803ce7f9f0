"""Speech-to-text providers: the registry and the interface."""

from providers.registry import Registry
from providers.transcription.base import (
    Segment,
    TranscriptionCapabilities,
    TranscriptionDone,
    TranscriptionEvent,
    TranscriptionProvider,
)

transcription_providers: Registry[TranscriptionProvider] = Registry("transcription")
transcription_providers.register_lazy(
    "local-whisper", "providers.transcription.local_whisper:create"
)
transcription_providers.register_lazy("openai", "providers.transcription.openai_compat:create")

__all__ = [
    "Segment",
    "TranscriptionCapabilities",
    "TranscriptionDone",
    "TranscriptionEvent",
    "TranscriptionProvider",
    "transcription_providers",
]
