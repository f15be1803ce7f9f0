"""Text-to-speech providers: the registry and the interface."""

from providers.registry import Registry
from providers.speech.base import (
    PCM_SAMPLE_BYTES,
    SpeechCapabilities,
    SpeechParams,
    SpeechProvider,
    check_params,
)

speech_providers: Registry[SpeechProvider] = Registry("speech")
speech_providers.register_lazy("local-espeak", "providers.speech.local_espeak:create")
speech_providers.register_lazy("openai", "providers.speech.openai_compat:create")
# GPL-3.0, so only with the optional extra `piper` (docs/decisions/0041-speech-voices.md).
speech_providers.register_lazy("local-piper", "providers.speech.local_piper:create")

__all__ = [
    "PCM_SAMPLE_BYTES",
    "SpeechCapabilities",
    "SpeechParams",
    "SpeechProvider",
    "check_params",
    "speech_providers",
]
