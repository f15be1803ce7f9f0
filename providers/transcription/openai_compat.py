"""Speech-to-text over the OpenAI audio transcriptions API (and compatible servers such as
faster-whisper-server, LocalAI and vLLM)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any, Literal

import httpx
import msgspec

from contracts.errors import ErrorCode
from providers.call_retry import call_with_retry, with_timeout
from providers.errors import ProviderError
from providers.http_api import (
    HttpApiProvider,
    HttpConfig,
    auth_headers,
    decode_json,
    error_from_exception,
    raise_for_status,
)
from providers.registry import parse_config
from providers.shared import Shared
from providers.transcription.base import (
    Segment,
    TranscriptionCapabilities,
    TranscriptionDone,
    TranscriptionEvent,
)


class OpenAITranscriptionConfig(HttpConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = "openai"
    base_url: str = "https://api.openai.com/v1"
    # verbose_json carries segments with timestamps; gpt-4o-transcribe only knows json,
    # which gives the text alone.
    response_format: Literal["verbose_json", "json"] = "verbose_json"
    max_audio_bytes: Annotated[int, msgspec.Meta(ge=1)] = 25 * 1024 * 1024  # OpenAI's limit
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 300.0


class _Segment(msgspec.Struct, frozen=True):
    start: float
    end: float
    text: str


class _Transcription(msgspec.Struct, frozen=True):
    text: str
    language: str | None = None
    duration: float | None = None
    segments: list[_Segment] | None = None


# The API guesses the container from the file name, so the name must carry the right suffix.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"RIFF", "wav"),
    (0, b"fLaC", "flac"),
    (0, b"OggS", "ogg"),
    (0, b"ID3", "mp3"),
    (0, b"\xff\xfb", "mp3"),
    (0, b"\xff\xf3", "mp3"),
    (0, b"\x1a\x45\xdf\xa3", "webm"),
    (4, b"ftyp", "m4a"),
)


def audio_filename(audio: bytes) -> str:
    for offset, magic, suffix in _MAGIC:
        if audio[offset : offset + len(magic)] == magic:
            return f"audio.{suffix}"
    return "audio.wav"


class OpenAITranscription(HttpApiProvider[OpenAITranscriptionConfig]):
    operation = "transcribe"

    @property
    def capabilities(self) -> TranscriptionCapabilities:
        # One request, one answer: segments arrive together, not as they are decoded.
        return TranscriptionCapabilities(models=tuple(self._config.models), streaming=False)

    async def transcribe(
        self, audio: bytes, *, model: str, language: str | None = None
    ) -> AsyncIterator[TranscriptionEvent]:
        self._check_model(model)
        if not audio:
            raise ProviderError(ErrorCode.INVALID_INPUT, self._op, "the audio is empty")
        if len(audio) > self._config.max_audio_bytes:
            raise ProviderError(
                ErrorCode.INVALID_INPUT,
                self._op,
                f"the audio is {len(audio)} bytes; at most {self._config.max_audio_bytes}",
            )
        form = {"model": model, "response_format": self._config.response_format}
        if language:
            form["language"] = language
        result = await call_with_retry(
            lambda: self._breaker.call(
                lambda: with_timeout(
                    lambda: self._post(audio, form), self._config.timeout_s, self._op
                )
            ),
            self._config.retry,
            self._sleep,
            name=self._op,
        )
        for segment in result.segments or ():
            yield Segment(start_s=segment.start, end_s=segment.end, text=segment.text.strip())
        yield TranscriptionDone(
            text=result.text.strip(),
            # Whisper names the language ("english") where the request and the local
            # provider use codes ("en"): keep the caller's code when there is one.
            language=language or result.language,
            duration_s=result.duration,
        )

    async def _post(self, audio: bytes, form: dict[str, str]) -> _Transcription:
        headers = {**self._config.headers, **auth_headers(self._config.api_key)}
        files = {"file": (audio_filename(audio), audio, "application/octet-stream")}
        try:
            response = await self._http.client.post(
                f"{self._base}/audio/transcriptions", data=form, files=files, headers=headers
            )
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, op=self._op, redact=self._redact) from exc
        await raise_for_status(response, op=self._op, redact=self._redact)
        parsed: _Transcription = decode_json(
            response.content, _Transcription, op=self._op, redact=self._redact
        )
        return parsed


def create(config: Mapping[str, Any], shared: Shared) -> OpenAITranscription:
    parsed = parse_config(str(config.get("name", "openai")), config, OpenAITranscriptionConfig)
    return OpenAITranscription(parsed)
