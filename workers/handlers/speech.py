"""The speech handler: the voice's audio streamed in the request's format as it is made, in
chunks each small enough for one reply message, then the usage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Final

from contracts.errors import ErrorCode
from contracts.names import Lane
from contracts.replies import ReplyChunk, SpeechAudio, SpeechResult, SpeechUsage
from contracts.speech import SpeechRequest
from providers.catalogue import NO_MODELS, ModelCatalogue
from providers.errors import ProviderError
from providers.router import ModelRouter
from providers.shared import Shared
from providers.speech.base import PCM_SAMPLE_BYTES, SpeechParams, SpeechProvider, check_params
from workers.handlers.provider_calls import ProviderCalls
from workers.handlers.providers import RoutedHandler, loaded, speaker
from workers.handlers.reply_stream import ChunkStamper
from workers.handlers.speech_encoding import AudioEncoders
from workers.metrics import WorkerMetrics
from workers.settings import WorkerSettings

# Room in a reply message for a chunk's other fields (request id, attempt, seq, tags).
_CHUNK_OVERHEAD_BYTES: Final = 1024


def audio_piece_bytes(part_bytes: int) -> int:
    """The most audio one SpeechAudio chunk carries so that its message stays within
    ``part_bytes`` in either encoding: JSON writes bytes as base64, 4 characters per 3."""
    return (part_bytes - _CHUNK_OVERHEAD_BYTES) * 3 // 4


class _Counted:
    """The PCM a voice yields, counted on its way to the encoder (the seconds of audio)."""

    def __init__(self, pcm: AsyncIterator[bytes]) -> None:
        self._pcm = pcm
        self.bytes = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for audio in self._pcm:
            self.bytes += len(audio)
            yield audio


class SpeechHandler(RoutedHandler[SpeechProvider]):
    kind = "speech"

    def __init__(
        self,
        router: ModelRouter[SpeechProvider],
        encoders: AudioEncoders,
        *,
        piece_bytes: int,
        models: ModelCatalogue = NO_MODELS,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        super().__init__(router)
        self._encoders = encoders
        self._piece_bytes = piece_bytes
        self._calls = ProviderCalls(models, metrics)

    async def handle(
        self, request: SpeechRequest, stamper: ChunkStamper, *, lane: Lane = "interactive"
    ) -> AsyncIterator[ReplyChunk]:
        # Both lanes alike here: the worker's lane gate is this kind's priority.
        provider = self._router.resolve(request.model, request.provider)
        self._encoders.check(request.response_format)  # before the voice starts
        if not request.input.strip():
            raise ProviderError(ErrorCode.INVALID_INPUT, "speech", "the input holds no words")
        params = SpeechParams(
            model=request.model,
            voice=request.voice,
            speed=request.speed,
            instructions=request.instructions,
        )
        # Checked here too, before an encoder starts: refused after one, a compressed
        # format's header would already have gone out.
        check_params(provider.capabilities, params, f"{provider.name}.speech")
        rate = provider.capabilities.sample_rate
        voice = self._calls.speak(provider, request.input, params)
        pcm = _Counted(voice)
        sent = 0
        encoded = self._encoders.encode(request.response_format, aiter(pcm), rate)
        # Both closed on the way out, the voice last: a job stopped early (cancelled, its
        # caller gone) stops its encoder and its voice's process now.
        async with aclosing(voice), aclosing(encoded) as pieces:
            async for audio in pieces:
                for start in range(0, len(audio), self._piece_bytes):
                    piece = audio[start : start + self._piece_bytes]
                    sent += len(piece)
                    yield SpeechAudio(**stamper.head(), audio=piece)
        cost = self._calls.settle_characters(provider.name, request.model, len(request.input))
        yield SpeechResult(
            **stamper.head(),
            model=request.model,
            voice=request.voice,
            response_format=request.response_format,
            sample_rate=rate,
            audio_bytes=sent,
            usage=SpeechUsage(
                characters=len(request.input),
                audio_s=round(pcm.bytes / (PCM_SAMPLE_BYTES * rate), 3),
                cost_usd=cost,
            ),
        )


async def build(
    settings: WorkerSettings, shared: Shared, metrics: WorkerMetrics | None
) -> SpeechHandler:
    voices: list[SpeechProvider] = await loaded(
        "speech", [speaker(s, shared) for s in settings.speech]
    )
    return SpeechHandler(
        ModelRouter("speech", voices),
        AudioEncoders.found(),
        piece_bytes=audio_piece_bytes(settings.replies.part_bytes),
        models=shared.models,
        metrics=metrics,
    )
