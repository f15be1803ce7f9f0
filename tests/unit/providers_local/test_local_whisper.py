"""local-whisper on real speech: espeak-ng synthesises it, Whisper tiny.en transcribes it."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contracts.errors import ErrorCode
from providers.errors import ProviderError
from providers.transcription import (
    Segment,
    TranscriptionDone,
    TranscriptionEvent,
    TranscriptionProvider,
    transcription_providers,
)
from providers.transcription.local_whisper import WHISPER_TINY_EN, LocalWhisperTranscription

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(
        shutil.which("espeak-ng") is None or shutil.which("sox") is None,
        reason="espeak-ng and sox make the test speech: run deploy/local/system-packages.sh",
    ),
]

FOX = "The quick brown fox jumps over the lazy dog."
STORY = (
    "Kafka is a distributed event streaming platform. Producers write records to topics, and "
    "consumers read them in order within each partition. A consumer group shares the "
    "partitions of a topic among its members, so that every record is handled by one member. "
    "When a member leaves or joins, the group rebalances and the partitions move."
)


def _speak(text: str, path: Path) -> Path:
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="module")
def fox_wav(audio_dir: Path) -> bytes:
    return _speak(FOX, audio_dir / "fox.wav").read_bytes()


@pytest.fixture(scope="module")
def fox_flac(audio_dir: Path, fox_wav: bytes) -> bytes:
    """The same speech as FLAC at 16 kHz: decoding is not limited to WAV."""
    out = audio_dir / "fox.flac"
    subprocess.run(
        ["sox", str(audio_dir / "fox.wav"), "-r", "16000", str(out)],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


@pytest.fixture(scope="module")
def long_wav(audio_dir: Path) -> bytes:
    """About 50 s: longer than Whisper's 30 s window, so decoding takes two passes."""
    story = _speak(STORY, audio_dir / "story.wav")
    out = audio_dir / "long.wav"
    subprocess.run(["sox", str(story), str(story), str(out)], check=True, capture_output=True)
    return out.read_bytes()


@pytest.fixture(scope="module")
async def whisper() -> AsyncIterator[LocalWhisperTranscription]:
    provider = transcription_providers.create("local-whisper")
    assert isinstance(provider, LocalWhisperTranscription)
    await provider.load()
    yield provider
    await provider.aclose()


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


async def _collect(stream: AsyncIterator[TranscriptionEvent]) -> list[TranscriptionEvent]:
    return [event async for event in stream]


def test_satisfies_the_protocol(whisper: LocalWhisperTranscription) -> None:
    assert isinstance(whisper, TranscriptionProvider)
    assert whisper.capabilities.models == (WHISPER_TINY_EN,)


async def test_transcribes_wav(whisper: LocalWhisperTranscription, fox_wav: bytes) -> None:
    events = await _collect(whisper.transcribe(fox_wav, model=WHISPER_TINY_EN))
    done = events[-1]
    assert isinstance(done, TranscriptionDone)
    # tiny.en hears espeak's "brown" as "round"; the other key words come through.
    assert len(_words(done.text) & {"quick", "fox", "lazy", "dog"}) >= 3, done.text
    assert done.language == "en"
    assert done.duration_s == pytest.approx(len(fox_wav) / (2 * 22050), rel=0.05)


async def test_decodes_other_formats(whisper: LocalWhisperTranscription, fox_flac: bytes) -> None:
    events = await _collect(whisper.transcribe(fox_flac, model=WHISPER_TINY_EN))
    done = events[-1]
    assert isinstance(done, TranscriptionDone)
    assert len(_words(done.text) & {"quick", "fox", "lazy", "dog"}) >= 3, done.text


async def test_segments_stream_before_done(
    whisper: LocalWhisperTranscription, long_wav: bytes
) -> None:
    arrivals: list[tuple[float, TranscriptionEvent]] = []
    start = time.perf_counter()
    async for event in whisper.transcribe(long_wav, model=WHISPER_TINY_EN, language="en"):
        arrivals.append((time.perf_counter() - start, event))
    events = [event for _, event in arrivals]
    segments = [e for e in events if isinstance(e, Segment)]
    assert len(segments) >= 4
    assert events[:-1] == segments
    done = events[-1]
    assert isinstance(done, TranscriptionDone)
    assert done.text == " ".join(s.text for s in segments)
    assert [s.start_s for s in segments] == sorted(s.start_s for s in segments)
    assert segments[-1].end_s > 30  # the second window was decoded too
    # The first window's segments were handed over while the second was still decoding.
    assert arrivals[-1][0] - arrivals[0][0] > 0.05
    assert {"kafka", "partitions", "consumer"} <= _words(done.text)


async def test_event_loop_stays_free(whisper: LocalWhisperTranscription, long_wav: bytes) -> None:
    ticks = 0
    stop = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not stop.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    start = time.perf_counter()
    await _collect(whisper.transcribe(long_wav, model=WHISPER_TINY_EN))
    elapsed = time.perf_counter() - start
    stop.set()
    await ticker
    # A blocked loop would tick about once; a free one about every 10 ms.
    assert ticks >= elapsed / 0.01 * 0.3


async def test_early_exit_stops_the_thread(
    whisper: LocalWhisperTranscription, long_wav: bytes, fox_wav: bytes
) -> None:
    stream = whisper.transcribe(long_wav, model=WHISPER_TINY_EN)
    first = await anext(stream)
    assert isinstance(first, Segment)
    await stream.aclose()  # what a cancelled consumer does
    assert not any(t.name == "local-whisper" for t in threading.enumerate())
    # The model is free again for the next call.
    events = await _collect(whisper.transcribe(fox_wav, model=WHISPER_TINY_EN))
    assert isinstance(events[-1], TranscriptionDone)


async def test_cancellation_stops_the_thread(
    whisper: LocalWhisperTranscription, long_wav: bytes
) -> None:
    task = asyncio.create_task(_collect(whisper.transcribe(long_wav, model=WHISPER_TINY_EN)))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not any(t.name == "local-whisper" for t in threading.enumerate())


@pytest.mark.parametrize(
    ("audio", "model", "language", "code"),
    [
        (b"not audio at all" * 100, WHISPER_TINY_EN, None, ErrorCode.INVALID_INPUT),
        (b"", WHISPER_TINY_EN, None, ErrorCode.INVALID_INPUT),
        (b"RIFF", "whisper-large-v3", None, ErrorCode.NOT_FOUND),
        (b"RIFF", WHISPER_TINY_EN, "de", ErrorCode.INVALID_INPUT),
    ],
)
async def test_bad_requests(
    whisper: LocalWhisperTranscription,
    audio: bytes,
    model: str,
    language: str | None,
    code: ErrorCode,
) -> None:
    with pytest.raises(ProviderError) as caught:
        await _collect(whisper.transcribe(audio, model=model, language=language))
    assert caught.value.code is code
