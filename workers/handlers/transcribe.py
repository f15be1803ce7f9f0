"""The transcribe handler: segments streamed as the model decodes them, then the full text."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from contracts.names import Lane
from contracts.replies import ReplyChunk, TranscribeResult, TranscriptSegment
from contracts.transcribe import TranscribeRequest
from providers.router import ModelRouter
from providers.shared import Shared
from providers.transcription.base import Segment, TranscriptionDone, TranscriptionProvider
from workers.handlers.audio import AudioLoader
from workers.handlers.guarded_fetch import caller_fetch
from workers.handlers.provider_calls import ProviderCalls
from workers.handlers.providers import RoutedHandler, loaded, transcriber
from workers.handlers.reply_stream import ChunkStamper
from workers.metrics import WorkerMetrics
from workers.settings import WorkerSettings


class TranscribeHandler(RoutedHandler[TranscriptionProvider]):
    kind = "transcribe"

    def __init__(self, router: ModelRouter[TranscriptionProvider], audio: AudioLoader) -> None:
        super().__init__(router)
        self._audio = audio
        self._calls = ProviderCalls()  # nothing to price: the catalogue prices tokens

    async def handle(
        self, request: TranscribeRequest, stamper: ChunkStamper, *, lane: Lane = "interactive"
    ) -> AsyncIterator[ReplyChunk]:
        # Both lanes alike here: the worker's lane gate is this kind's priority.
        provider = self._router.resolve(request.model, request.provider)
        audio = request.audio
        if audio is None:
            assert request.audio_url is not None  # the contract demands one of the two
            audio = await self._audio.read(request.audio_url)
        done: TranscriptionDone | None = None
        stream = self._calls.transcribe(
            provider, audio, model=request.model, language=request.language
        )
        async with aclosing(stream) as events:
            async for event in events:
                if isinstance(event, Segment):
                    yield TranscriptSegment(
                        **stamper.head(), start_s=event.start_s, end_s=event.end_s, text=event.text
                    )
                else:
                    done = event
        if done is None:
            raise RuntimeError(f"transcription provider {provider.name!r} ended without a result")
        yield TranscribeResult(
            **stamper.head(),
            model=request.model,
            text=done.text,
            language=done.language,
            duration_s=done.duration_s,
        )

    async def aclose(self) -> None:
        await super().aclose()
        await self._audio.aclose()


async def build(
    settings: WorkerSettings, shared: Shared, metrics: WorkerMetrics | None
) -> TranscribeHandler:
    stt: list[TranscriptionProvider] = await loaded(
        "transcription",
        [transcriber(s, shared) for s in settings.transcription],
    )
    fetch = caller_fetch(settings.caller_urls)
    audio = AudioLoader(settings.audio_roots, settings.max_audio_bytes, fetch)
    return TranscribeHandler(ModelRouter("transcription", stt), audio)
