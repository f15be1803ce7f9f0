"""The audio formats a speech worker makes from its voices' PCM: wav and pcm always, and
flac, mp3 and opus where an encoder program that makes them (sox, ffmpeg) is on PATH when
the worker starts. Encoding streams: the encoder's output is sent as it comes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Final

from contracts.errors import ErrorCode
from contracts.speech import SPEECH_FORMATS
from contracts.wav import wav_header
from providers.errors import ProviderError

log = logging.getLogger(__name__)

_OP: Final = "speech.encode"
_READ_BYTES: Final = 16_384
_ALWAYS: Final = ("wav", "pcm")
# What each program is asked for per format: sox's format names; ffmpeg's codec and muxer
# (OpenAI's opus is Opus in Ogg).
_SOX_TYPES: Final = {"flac": "flac", "mp3": "mp3", "opus": "opus"}
_FFMPEG_ARGS: Final = {
    "flac": ("flac", ["-c:a", "flac", "-f", "flac"]),
    "mp3": ("libmp3lame", ["-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"]),
    "opus": ("libopus", ["-c:a", "libopus", "-b:a", "32k", "-f", "ogg"]),
}


def _probe(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr


def _sox_commands(sox: str) -> dict[str, list[str]]:
    listed = _probe([sox, "--help"]).partition("AUDIO FILE FORMATS:")[2].partition("\n")[0]
    formats = set(listed.split())
    raw_in = [sox, "-q", "-t", "raw", "-r", "{rate}", "-e", "signed", "-b", "16", "-c", "1", "-"]
    return {fmt: [*raw_in, "-t", kind, "-"] for fmt, kind in _SOX_TYPES.items() if kind in formats}


def _ffmpeg_commands(ffmpeg: str) -> dict[str, list[str]]:
    encoders = _probe([ffmpeg, "-hide_banner", "-encoders"])
    raw_in = [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "s16le", "-ar", "{rate}"]
    raw_in += ["-ac", "1", "-i", "pipe:0"]
    return {
        fmt: [*raw_in, *args, "pipe:1"]
        for fmt, (encoder, args) in _FFMPEG_ARGS.items()
        if f" {encoder} " in encoders
    }


def find_encoders() -> dict[str, list[str]]:
    """Per compressed format, the command that makes it from raw PCM on stdin (``{rate}``
    stands for the sample rate): ffmpeg's where it has the encoder, else sox's."""
    commands: dict[str, list[str]] = {}
    if sox := shutil.which("sox"):
        commands.update(_sox_commands(sox))
    if ffmpeg := shutil.which("ffmpeg"):
        commands.update(_ffmpeg_commands(ffmpeg))
    return commands


class AudioEncoders:
    """The formats this worker makes, and the making of them."""

    def __init__(self, commands: dict[str, list[str]]) -> None:
        self._commands = dict(commands)
        self.formats = tuple(f for f in SPEECH_FORMATS if f in _ALWAYS or f in commands)

    @classmethod
    def found(cls) -> AudioEncoders:
        encoders = cls(find_encoders())
        log.info("speech formats: %s", ", ".join(encoders.formats))
        return encoders

    def check(self, fmt: str) -> None:
        if fmt not in self.formats:
            raise ProviderError(
                ErrorCode.INVALID_INPUT,
                _OP,
                f"response_format {fmt!r} is not made by this worker (no encoder for it is "
                f"installed); formats: {', '.join(self.formats)}",
            )

    async def encode(
        self, fmt: str, pcm: AsyncIterator[bytes], sample_rate: int
    ) -> AsyncGenerator[bytes, None]:
        """``pcm`` (s16le mono) as ``fmt``, piece by piece as it is made."""
        self.check(fmt)
        if fmt == "pcm":
            async for audio in pcm:
                yield audio
        elif fmt == "wav":
            header = wav_header(sample_rate)  # sent with the first audio, not alone
            async for audio in pcm:
                yield header + audio
                header = b""
            if header:
                yield header
        else:
            argv = [a.replace("{rate}", str(sample_rate)) for a in self._commands[fmt]]
            async for audio in _piped(argv, pcm):
                yield audio


async def _piped(argv: list[str], pcm: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """What ``argv`` writes to stdout while ``pcm`` is written to its stdin."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    stdin = process.stdin

    async def feed() -> None:
        try:
            async for audio in pcm:
                stdin.write(audio)
                await stdin.drain()
        finally:
            stdin.close()

    feeder = asyncio.create_task(feed())
    try:
        while audio := await process.stdout.read(_READ_BYTES):
            yield audio
        await feeder  # the voice's errors surface here
        if await process.wait() != 0:
            stderr = (await process.stderr.read()).decode(errors="replace").strip()
            raise ProviderError(
                ErrorCode.INTERNAL, _OP, f"{argv[0]} failed (exit {process.returncode}): {stderr}"
            )
    finally:
        if not feeder.done():
            feeder.cancel()
            await asyncio.wait([feeder])  # ended, its outcome left to the error in flight
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await process.wait()
