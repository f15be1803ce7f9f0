"""Speech end to end through Kafka, Redis and real workers, one speech worker and one gateway
for the module: ten sentences spoken by the default local voice, checked as a WAV file and
transcribed back by the fleet's own transcribe job (local Whisper) with few word errors;
hostile requests refused, by name, while the worker stays up; and ``POST /v1/audio/speech``
driven by the official `openai` package (raw audio as it is made, server-sent events,
refusals in OpenAI's shape)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import uuid
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

import openai
import pytest

from contracts import ErrorCode, SpeechAudio, SpeechResult
from contracts.secrets import Secret
from contracts.wav import WAV_HEADER_BYTES
from gateway import Gateway
from producer_sdk import FleetRequestError, SpokenAudio
from tests.conftest import Infra
from tests.integration.harness import read_dead_letters, serving
from workers import WorkerSettings, build_worker
from workers.handlers.speech_encoding import find_encoders

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.redis,
    pytest.mark.model,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="deploy/local/system-packages.sh"),
]

VOICE = "espeak-ng"
API_KEY = "sk-acme-" + uuid.uuid4().hex
TEXT = "The gateway speaks, clause by clause, while the fleet is still making the rest."
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


class Speaking(NamedTuple):
    settings: WorkerSettings
    base_url: str  # the gateway's
    signing_key: str


@pytest.fixture(scope="module")
async def speaking(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Speaking]:
    """One speech worker and one gateway for the module, verifying tenant signatures."""
    signing_key = "acme-signing-" + uuid.uuid4().hex
    signing = {"acme": Secret(signing_key)}
    settings = WorkerSettings(
        bootstrap_servers=infra.bootstrap_servers,
        kafka=infra.security,
        redis_url=infra.redis_url,
        namespace=f"test-{uuid.uuid4().hex[:12]}",
        partitions=1,
        tenant_keys=signing,
        audio_roots=[str(tmp_path_factory.mktemp("audio"))],
    )
    gateway = Gateway(
        infra.connection,
        namespace=settings.namespace,
        api_keys={"acme": Secret(API_KEY)},
        tenant_keys=signing,
        models={VOICE: "speech"},
        port=0,
    )
    async with serving(await build_worker("speech", settings)), gateway.running():
        yield Speaking(settings, f"http://{gateway.host}:{gateway.port}/v1", signing_key)


async def test_ten_spoken_sentences_transcribe_back_and_hostile_input_is_refused(
    infra: Infra, speaking: Speaking
) -> None:
    settings = speaking.settings
    text = " ".join(SENTENCES)
    async with infra.client(
        namespace=settings.namespace,
        tenant="acme",
        tenant_key=speaking.signing_key,
        default_timeout_s=60,
    ) as client:
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
            "speed out of range": lambda: say(speed=9.0),
            "instructions": lambda: say(instructions="Whisper."),
        }
        # A compressed format this machine has no encoder for (sox makes flac, and mp3 with
        # libsox-fmt-mp3; opus needs ffmpeg), if there is one.
        made = find_encoders()
        if unmade := next((f for f in ("opus", "mp3", "flac") if f not in made), None):
            hostile["format without an encoder"] = lambda: say(response_format=unmade)
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
    if unmade is not None:
        assert repr(unmade) in refusals["format without an encoder"]
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

    path = Path(settings.audio_roots[0]) / "ten-sentences.wav"
    path.write_bytes(spoken.audio)  # over a request's 1 MB: the worker reads it from its root
    async with (
        serving(await build_worker("transcribe", settings)),
        infra.client(
            namespace=settings.namespace, tenant="acme", tenant_key=speaking.signing_key
        ) as client,
    ):
        heard = await client.transcribe(model=WHISPER_MODEL, audio_url=str(path))
    wer = word_error_rate(words(text), words(heard.text))
    assert wer <= 0.15, f"word error rate {wer:.3f}: heard {heard.text!r}"


def client(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=0)


async def test_raw_wav_streams_in_pieces_and_plays(speaking: Speaking) -> None:
    pieces: list[bytes] = []
    async with (
        client(speaking.base_url) as openai_client,
        openai_client.audio.speech.with_streaming_response.create(
            model=VOICE, voice="alloy", input=TEXT, response_format="wav"
        ) as response,
    ):
        assert response.headers["content-type"] == "audio/wav"
        async for piece in response.iter_bytes():
            pieces.append(piece)
    audio = b"".join(pieces)
    assert len(pieces) > 1  # the first clause's audio came before the rest was made
    with wave.open(io.BytesIO(audio)) as wav:  # a streamed header: its length unknown
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 22_050)
        frames = wav.readframes(wav.getnframes())
    assert len(frames) == len(audio) - WAV_HEADER_BYTES
    assert len(frames) / 2 / 22_050 > 2.0


async def test_sse_gives_audio_deltas_then_done_with_the_usage(speaking: Speaking) -> None:
    async with (
        client(speaking.base_url) as openai_client,
        openai_client.audio.speech.with_streaming_response.create(
            model=VOICE,
            voice="alloy",
            input=TEXT,
            response_format="pcm",
            extra_body={"stream_format": "sse"},
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in response.iter_lines() if line.startswith("data: ")]
    events = [json.loads(line.removeprefix("data: ")) for line in lines]
    *deltas, done = events
    assert deltas
    assert {e["type"] for e in deltas} == {"speech.audio.delta"}
    pcm = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert done["type"] == "speech.audio.done"
    assert done["usage"]["characters"] == len(TEXT)
    assert done["usage"]["audio_s"] == pytest.approx(len(pcm) / 2 / 22_050, abs=0.01)


async def test_refusals_come_in_openais_shape_naming_the_field(speaking: Speaking) -> None:
    async with client(speaking.base_url) as openai_client:
        speech = openai_client.audio.speech

        async def refusal(**fields: object) -> openai.APIStatusError:
            call: dict[str, object] = {"model": VOICE, "voice": "alloy", "input": "Hi."}
            call.update({"response_format": "wav", **fields})
            with pytest.raises(openai.APIStatusError) as info:
                await speech.create(**call)  # type: ignore[arg-type]
            return info.value

        too_long = await refusal(input="a" * 4097)
        voice = await refusal(voice="nobody")
        fast = await refusal(speed=9.0)
        model = await refusal(model="tts-1")
        aac = await refusal(response_format="aac")
        # OpenAI's default format: made where sox or ffmpeg can make mp3, else refused.
        mp3 = None if "mp3" in find_encoders() else await refusal(response_format=openai.NOT_GIVEN)
        made = None
        if mp3 is None:
            made = (await speech.create(model=VOICE, voice="alloy", input="Hi.")).content
    assert (too_long.status_code, too_long.body["param"]) == (400, "input")  # type: ignore[index]
    assert "4096" in too_long.message
    assert (fast.status_code, fast.body["param"]) == (400, "speed")  # type: ignore[index]
    assert (aac.status_code, aac.body["param"]) == (400, "response_format")  # type: ignore[index]
    assert voice.status_code == 400
    assert "'nobody'" in voice.message
    assert model.status_code == 404
    if mp3 is not None:
        assert mp3.status_code == 400
        assert "formats: wav, pcm" in mp3.message
    else:  # an MPEG audio stream: an ID3 tag or a frame's sync bits first
        assert made is not None
        assert made[:3] == b"ID3" or (made[0] == 0xFF and made[1] & 0xE0 == 0xE0), made[:8]
