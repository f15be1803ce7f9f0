"""Speech over the OpenAI audio speech API (``POST /audio/speech``) and compatible servers
(Kokoro-FastAPI, LocalAI, openedai-speech): raw PCM asked for, read as it arrives."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Annotated, Any, Final

import httpx
import msgspec

from contracts.errors import ErrorCode
from providers.call_retry import stream_with_retry
from providers.errors import ProviderError
from providers.http_api import HttpApiProvider, HttpConfig, error_from_exception, raise_for_status
from providers.registry import parse_config
from providers.shared import Shared
from providers.speech.base import SpeechCapabilities, SpeechParams, check_params

# OpenAI's voices (https://platform.openai.com/docs/guides/text-to-speech).
OPENAI_VOICES: Final = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer",
    "verse",
)  # fmt: skip
# `response_format: "pcm"` is 24 kHz signed 16-bit little-endian mono, without a header.
OPENAI_PCM_RATE: Final = 24_000


class OpenAISpeechConfig(HttpConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = "openai"
    base_url: str = "https://api.openai.com/v1"
    voices: list[str] = msgspec.field(default_factory=lambda: list(OPENAI_VOICES))
    # Of `models`, those that take `instructions` (OpenAI: gpt-4o-mini-tts only).
    instruction_models: list[str] = msgspec.field(default_factory=lambda: ["gpt-4o-mini-tts"])
    sample_rate: Annotated[int, msgspec.Meta(ge=8000)] = OPENAI_PCM_RATE
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 120.0


class OpenAISpeech(HttpApiProvider[OpenAISpeechConfig]):
    operation = "speech"

    @property
    def capabilities(self) -> SpeechCapabilities:
        return SpeechCapabilities(
            models=tuple(self._config.models),
            voices=tuple(self._config.voices),
            sample_rate=self._config.sample_rate,
            instruction_models=tuple(self._config.instruction_models),
        )

    async def synthesize(self, text: str, params: SpeechParams) -> AsyncGenerator[bytes, None]:
        check_params(self.capabilities, params, self._op)
        if not text.strip():
            raise ProviderError(ErrorCode.INVALID_INPUT, self._op, "the input holds no words")
        body: dict[str, Any] = {
            "model": params.model,
            "input": text,
            "voice": params.voice,
            "response_format": "pcm",
            "speed": params.speed,
        }
        if params.instructions is not None:
            body["instructions"] = params.instructions
        # Retried only until the first audio arrives: after it, a retry would speak again
        # what the caller already has.
        stream = stream_with_retry(
            lambda: self._attempt(body), self._config.retry, self._sleep, name=self._op
        )
        odd = b""  # a sample split between two network reads waits for its second byte
        # aclosing: a caller that stops early closes the response now, not at collection.
        async with aclosing(stream) as pieces:
            async for audio in pieces:
                audio = odd + audio
                cut = len(audio) - len(audio) % 2
                odd = audio[cut:]
                if cut:
                    yield audio[:cut]

    async def _attempt(self, body: dict[str, Any]) -> AsyncGenerator[bytes, None]:
        headers = {**self._headers(), "content-type": "application/json"}
        with self._breaker.guard():
            try:
                async with self._http.client.stream(
                    "POST",
                    f"{self._base}/audio/speech",
                    content=msgspec.json.encode(body),
                    headers=headers,
                ) as response:
                    await raise_for_status(response, op=self._op, redact=self._redact)
                    kind = response.headers.get("content-type", "")
                    if kind.startswith(("application/json", "text/")):
                        raise ProviderError(
                            ErrorCode.UNEXPECTED_RESPONSE,
                            self._op,
                            f"the server answered {kind!r}, not audio",
                        )
                    async for audio in response.aiter_bytes():
                        if audio:
                            yield audio
            except httpx.HTTPError as exc:
                raise error_from_exception(exc, op=self._op, redact=self._redact) from exc


def create(config: Mapping[str, Any], shared: Shared) -> OpenAISpeech:
    parsed = parse_config(str(config.get("name", "openai")), config, OpenAISpeechConfig)
    return OpenAISpeech(parsed)
