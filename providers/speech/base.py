"""What a text-to-speech provider is: text in, 16-bit mono PCM streamed as it is made."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Final, Protocol, runtime_checkable

import msgspec

from contracts.errors import ErrorCode
from contracts.speech import SPEECH_MAX_SPEED, SPEECH_MIN_SPEED
from providers.errors import ProviderError

# Every provider yields signed 16-bit little-endian mono samples: the worker encodes them
# into the format a request asks for (workers/handlers/speech_encoding.py).
PCM_SAMPLE_BYTES: Final = 2


class SpeechCapabilities(msgspec.Struct, frozen=True, kw_only=True):
    models: tuple[str, ...]
    voices: tuple[str, ...]
    sample_rate: int
    min_speed: float = SPEECH_MIN_SPEED
    max_speed: float = SPEECH_MAX_SPEED
    # The models that take `instructions` (how to speak); the others refuse them.
    instruction_models: tuple[str, ...] = ()


class SpeechParams(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    voice: str
    speed: float = 1.0
    instructions: str | None = None


@runtime_checkable
class SpeechProvider(Protocol):
    name: str

    @property
    def capabilities(self) -> SpeechCapabilities: ...

    def synthesize(self, text: str, params: SpeechParams) -> AsyncGenerator[bytes, None]:
        """Yield PCM (``capabilities.sample_rate``, s16le, mono) piece by piece as it is
        made; refuse what ``check_params`` refuses before any work. An async generator:
        a caller that stops early closes it, and the work stops then (a process killed, a
        response closed)."""
        ...

    async def load(self) -> None: ...

    async def health(self) -> bool: ...

    async def aclose(self) -> None: ...


def check_params(capabilities: SpeechCapabilities, params: SpeechParams, op: str) -> None:
    """Refuse, naming the field and what is served, a request the provider cannot honour."""
    if params.model not in capabilities.models:
        raise ProviderError(
            ErrorCode.NOT_FOUND,
            op,
            f"model {params.model!r} is not served here; available: "
            + ", ".join(capabilities.models),
        )
    if params.voice not in capabilities.voices:
        raise ProviderError(
            ErrorCode.INVALID_INPUT,
            op,
            f"unknown voice {params.voice!r}; voices: {', '.join(capabilities.voices)}",
        )
    if not capabilities.min_speed <= params.speed <= capabilities.max_speed:
        raise ProviderError(
            ErrorCode.INVALID_INPUT,
            op,
            f"speed {params.speed:g} is out of range: this voice speaks from "
            f"{capabilities.min_speed:.3g} to {capabilities.max_speed:.3g}",
        )
    if params.instructions is not None and params.model not in capabilities.instruction_models:
        raise ProviderError(
            ErrorCode.INVALID_INPUT,
            op,
            f"instructions are not supported by model {params.model!r}"
            + (
                f"; models that take them: {', '.join(capabilities.instruction_models)}"
                if capabilities.instruction_models
                else ""
            ),
        )
