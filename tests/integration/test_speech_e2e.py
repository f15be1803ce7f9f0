"""Speech end to end through Kafka, Redis and real workers: ten sentences spoken by the
default local voice, checked as a WAV file, and transcribed back by the fleet's own
transcribe job (local Whisper) with few word errors; hostile requests refused, by name,
while the worker stays up."""

from __future__ import annotations

import io
import re
import shutil
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts import ErrorCode, SpeechAudio, SpeechResult
from producer_sdk import FleetClient, FleetRequestError, SpokenAudio
from tests.conftest import Infra
from tests.integration.harness import read_dead_letters, serving
from workers import WorkerSettings, build_worker

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.redis,
    pytest.mark.model,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="deploy/local/system-packages.sh"),
]

VOICE = "espeak-ng"
WHISPER_MODEL = "whisper-tiny.en"
SENTENCES = (
    "The workers read their jobs from the request topic.",
    "Every answer goes back to the client that asked for it.",
    "A job that fails too often ends in the dead letter topic.",
    "The ledger in Redis makes sure that each job runs once.",
    "Small models run on the local machine without a network.",
    "The gateway speaks the same language as the public API.",
    "Audio starts to play before the whole sentence is spoken.",
    "Batch work waits while interactive requests go first.",
    "Each tenant signs its requests with a key of its own.",
    "The fleet grows by adding workers to a consumer group.",
)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower().replace("-", " "))


def word_error_rate(reference: list[str], hypothesis: list[str]) -> float:
    """Word-level edit distance (substitutions, insertions, deletions) over the reference."""
    row = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        diagonal, row[0] = row[0], i
        for j, hyp in enumerate(hypothesis, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (ref != hyp))
    return row[-1] / len(reference)


async def test_ten_spoken_sentences_transcribe_back_and_hostile_input_is_refused(
    infra: Infra, settings: WorkerSettings, client: FleetClient, tmp_path: Path
) -> None:
    settings = msgspec.structs.replace(settings, audio_roots=[str(tmp_path)])
    text = " ".join(SENTENCES)
    async with serving(await build_worker("speech", settings)):
        events = [
            e async for e in client.stream_speech(text, model=VOICE, voice="alloy", speed=1.0)
        ]
        audio_chunks = [e for e in events if isinstance(e, SpeechAudio)]
        result = events[-1]
        assert isinstance(result, SpeechResult)
        # Streamed clause by clause: many chunks, the first only the WAV header and the
        # first clause, long before the whole text's audio.
        assert len(audio_chunks) > len(SENTENCES)
        assert len(audio_chunks[0].audio) < result.audio_bytes / 10
        spoken = await client.speech(text, model=VOICE, voice="alloy")

        def say(text: str = "Still here.", **options: Any) -> Awaitable[SpokenAudio]:
            return client.speech(text, model=VOICE, voice=options.pop("voice", "alloy"), **options)

        refusals: dict[str, str] = {}
        hostile: dict[str, Callable[[], Awaitable[SpokenAudio]]] = {
            "input over the limit": lambda: say("a" * 4097),
            "empty input": lambda: say(""),
            "unknown voice": lambda: say(voice="nobody"),
            "unknown format": lambda: say(response_format="aac"),
            "format without an encoder": lambda: say(response_format="mp3"),
            "speed out of range": lambda: say(speed=9.0),
            "instructions": lambda: say(instructions="Whisper."),
        }
        for name, call in hostile.items():
            with pytest.raises(FleetRequestError) as info:
                await call()
            assert info.value.code is ErrorCode.INVALID_INPUT, name
            refusals[name] = str(info.value)
        alive = await client.speech("Still here.", model=VOICE, voice="alloy")
    dead = await read_dead_letters(infra, settings.namespace, 4, kind="speech")

    assert "length <= 4096" in refusals["input over the limit"]
    assert "length >= 1" in refusals["empty input"]
    assert "'nobody'" in refusals["unknown voice"]
    assert "$.response_format" in refusals["unknown format"]
    assert "<= 4.0" in refusals["speed out of range"]
    assert "instructions" in refusals["instructions"]
    if "mp3" in refusals["format without an encoder"]:  # a worker without ffmpeg or lame
        assert "formats: wav, pcm" in refusals["format without an encoder"]
    assert len(dead) == 4  # the four that break the contract; the worker's refusals are answers
    assert alive.result.usage.audio_s > 0.3

    assert b"".join(c.audio for c in audio_chunks)[44:] == spoken.audio[44:]
    usage = spoken.result.usage
    assert usage.characters == len(text)
    with wave.open(io.BytesIO(spoken.audio)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        assert wav.getframerate() == spoken.result.sample_rate
        seconds = wav.getnframes() / wav.getframerate()
        assert len(wav.readframes(wav.getnframes())) == len(spoken.audio) - 44
    assert seconds == pytest.approx(usage.audio_s, abs=0.01)
    assert 20 < seconds < 60

    path = tmp_path / "ten-sentences.wav"
    path.write_bytes(spoken.audio)  # over a request's 1 MB: the worker reads it from its root
    async with serving(await build_worker("transcribe", settings)):
        heard = await client.transcribe(model=WHISPER_MODEL, audio_url=str(path))
    wer = word_error_rate(words(text), words(heard.text))
    assert wer <= 0.15, f"word error rate {wer:.3f}: heard {heard.text!r}"
