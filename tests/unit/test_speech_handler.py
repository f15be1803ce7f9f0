"""The speech handler with the OpenAI-compatible voice (a PCM body in the API's shape): the
audio in chunks that each fit one reply message, numbered in order, joined by the SDK into
the file; the usage priced per character and counted; a replayed result without its audio
refused by the SDK instead of handed out short."""

from __future__ import annotations

import io
import wave

import msgspec
import pytest

from contracts.codec import encode
from contracts.errors import ErrorCode
from contracts.names import ContentType
from contracts.replies import SpeechAudio, SpeechResult, SpeechUsage
from contracts.speech import SpeechRequest
from producer_sdk import AudioIncomplete
from producer_sdk.speech import SpeechJoiner
from providers.catalogue import ModelCatalogue, ModelEntry
from providers.errors import ProviderError
from providers.registry import parse_config
from providers.router import ModelRouter
from providers.speech.openai_compat import OpenAISpeech, OpenAISpeechConfig
from tests.unit.providers import API_KEY, FakeClock, FakeSleep, Replay
from tests.unit.providers.test_openai_speech import PCM, pcm_body
from workers.handlers.reply_stream import ChunkStamper
from workers.handlers.speech import SpeechHandler, audio_piece_bytes
from workers.handlers.speech_encoding import AudioEncoders, find_encoders
from workers.metrics import WorkerMetrics

PART_BYTES = 4096


def handler(metrics: WorkerMetrics, encoders: AudioEncoders | None = None) -> SpeechHandler:
    config = parse_config("openai", {"api_key": API_KEY, "models": ["tts-1"]}, OpenAISpeechConfig)
    voice = OpenAISpeech(
        config, transport=pcm_body(Replay()).transport(), sleep=FakeSleep(), clock=FakeClock()
    )
    return SpeechHandler(
        ModelRouter("speech", [voice]),
        encoders or AudioEncoders({}),
        piece_bytes=audio_piece_bytes(PART_BYTES),
        models=ModelCatalogue([ModelEntry(name="tts-1", input_usd_per_mchar=15.0)]),
        metrics=metrics,
    )


async def test_audio_chunks_fit_a_message_and_join_into_a_priced_wav() -> None:
    metrics = WorkerMetrics("speech")
    speech = handler(metrics)
    request = SpeechRequest(request_id="s1", model="tts-1", input="Hello there.", voice="alloy")
    try:
        chunks = [c async for c in speech.handle(request, ChunkStamper("s1", 0))]
    finally:
        await speech.aclose()
    *audio, result = chunks
    assert isinstance(result, SpeechResult)
    assert all(isinstance(c, SpeechAudio) for c in audio)
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert len(audio) > 1  # 12 kB of audio, at most ~2.3 kB a chunk
    for chunk in audio:
        assert len(encode(chunk, ContentType.JSON)) <= PART_BYTES  # base64: the larger one
    assert result.usage.characters == len("Hello there.")
    assert result.usage.audio_s == pytest.approx(0.25)
    assert result.usage.cost_usd == pytest.approx(12 * 15.0 / 1_000_000)
    spent = metrics.registry.get_sample_value(
        "fleet_cost_usd_total", {"kind": "speech", "provider": "openai", "model": "tts-1"}
    )
    assert spent == pytest.approx(12 * 15.0 / 1_000_000)

    joiner = SpeechJoiner()
    for chunk in audio:
        assert isinstance(chunk, SpeechAudio)
        joiner.add(chunk)
    spoken = joiner.join(result)
    with wave.open(io.BytesIO(spoken.audio)) as wav:
        assert wav.getframerate() == 24_000
        assert wav.readframes(wav.getnframes()) == PCM
    # A result replayed from the ledger comes without the audio it counts: refused, not short.
    with pytest.raises(AudioIncomplete, match="new request id"):
        SpeechJoiner().join(msgspec.structs.replace(result, seq=0))


@pytest.mark.skipif("flac" not in find_encoders(), reason="run deploy/local/system-packages.sh")
async def test_a_voice_it_does_not_serve_is_refused_before_any_audio_in_any_format() -> None:
    speech = handler(WorkerMetrics("speech"), AudioEncoders(find_encoders()))
    request = SpeechRequest(
        request_id="s2", model="tts-1", input="Hi.", voice="nobody", response_format="flac"
    )
    stream = speech.handle(request, ChunkStamper("s2", 0))
    try:
        with pytest.raises(ProviderError) as info:  # its first chunk: nothing went out
            await anext(stream)
    finally:
        await speech.aclose()
    assert info.value.code is ErrorCode.INVALID_INPUT


def test_a_restarted_job_keeps_only_the_audio_of_its_new_attempt() -> None:
    joiner = SpeechJoiner()
    joiner.add(SpeechAudio(request_id="s3", seq=0, audio=b"old-"))
    joiner.restart()  # StreamRestarted: the worker died, another runs the job again
    joiner.add(SpeechAudio(request_id="s3", attempt=1, seq=0, audio=b"\x01\x00"))
    result = SpeechResult(
        request_id="s3",
        attempt=1,
        seq=1,
        model="tts-1",
        voice="alloy",
        response_format="pcm",
        sample_rate=24_000,
        audio_bytes=2,
        usage=SpeechUsage(characters=3, audio_s=0.0),
    )
    assert joiner.join(result).audio == b"\x01\x00"
