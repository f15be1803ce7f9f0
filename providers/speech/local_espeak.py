"""Local speech with eSpeak NG: the ``espeak-ng`` program (deploy/local/system-packages.sh),
run once per clause as a subprocess whose WAV output is read as it is written.

A formant voice: robotic, but small, fast and understood by Whisper
(docs/decisions/0041-speech-voices.md). The process runs outside this one's licence (GPL),
as a program, and is killed when the job stops early.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncGenerator, Mapping
from typing import Annotated, Any, Final

import msgspec

from contracts.errors import ConfigError, ErrorCode
from providers.errors import ProviderError
from providers.registry import parse_config
from providers.shared import Shared
from providers.speech.base import SpeechCapabilities, SpeechParams, check_params
from providers.speech.clauses import clauses

ESPEAK_MODEL: Final = "espeak-ng"
SAMPLE_RATE: Final = 22_050
# eSpeak's words a minute at speed 1.0, and the range it speaks in.
_BASE_WPM: Final = 175
_MIN_WPM: Final = 80
_MAX_WPM: Final = 450
# OpenAI's voice names, so that requests written for OpenAI are served here: each is one of
# eSpeak's English voice variants. eSpeak's own names are served as they are.
OPENAI_VOICES: Final[dict[str, str]] = {
    "alloy": "en-us",
    "ash": "en-us+m3",
    "ballad": "en-gb+m2",
    "coral": "en-us+f2",
    "echo": "en-us+m1",
    "fable": "en-gb",
    "nova": "en-us+f3",
    "onyx": "en-us+m7",
    "sage": "en-gb+f2",
    "shimmer": "en-us+f4",
    "verse": "en-gb+m4",
}
_ESPEAK_VOICES: Final = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp")
_WAV_HEADER_BYTES: Final = 44  # eSpeak writes the canonical 44-byte header, then samples
_READ_BYTES: Final = 16_384


class LocalEspeakConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = "local-espeak"
    binary: str = "espeak-ng"
    model_name: str = ESPEAK_MODEL
    # One clause's synthesis at most this long: a stuck process is killed, the job fails.
    clause_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0


class LocalEspeakSpeech:
    def __init__(self, config: LocalEspeakConfig) -> None:
        self.name = config.name
        self._config = config
        self._op = f"{config.name}.speech"
        self._voices = {**OPENAI_VOICES, **{v: v for v in _ESPEAK_VOICES}}

    @property
    def capabilities(self) -> SpeechCapabilities:
        return SpeechCapabilities(
            models=(self._config.model_name,),
            voices=tuple(self._voices),
            sample_rate=SAMPLE_RATE,
            min_speed=_MIN_WPM / _BASE_WPM,
            max_speed=_MAX_WPM / _BASE_WPM,
        )

    async def load(self) -> None:
        """Speak one word: the program is there and runs, or the worker does not start."""
        if shutil.which(self._config.binary) is None:
            raise ConfigError(
                f"provider {self.name!r}: {self._config.binary!r} is not on PATH "
                "(deploy/local/system-packages.sh installs espeak-ng)"
            )
        params = SpeechParams(model=self._config.model_name, voice="en-us")
        audio = b"".join([piece async for piece in self._clause("ready", params)])
        if not audio:
            raise ProviderError(ErrorCode.PROVIDER_DOWN, self._op, "espeak-ng made no audio")

    async def health(self) -> bool:
        return shutil.which(self._config.binary) is not None

    async def aclose(self) -> None:
        """Nothing held between calls: each clause's process ends with it."""

    async def synthesize(self, text: str, params: SpeechParams) -> AsyncGenerator[bytes, None]:
        check_params(self.capabilities, params, self._op)
        pieces = clauses(text)
        if not pieces:
            raise ProviderError(ErrorCode.INVALID_INPUT, self._op, "the input holds no words")
        for clause in pieces:
            async for audio in self._clause(clause, params):
                yield audio

    async def _clause(self, text: str, params: SpeechParams) -> AsyncGenerator[bytes, None]:
        wpm = round(min(max(_BASE_WPM * params.speed, _MIN_WPM), _MAX_WPM))
        # UTF-8 text (-b 1) from stdin, the voice, words a minute; WAV to stdout.
        argv = ["--stdout", "-b", "1", "-v", self._voices[params.voice], "-s", str(wpm)]
        process = await asyncio.create_subprocess_exec(
            self._config.binary,
            *argv,
            "--stdin",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(self._config.clause_timeout_s):
                async for audio in self._read(process, text):
                    yield audio
        except TimeoutError:
            raise ProviderError(
                ErrorCode.TIMEOUT,
                self._op,
                f"espeak-ng took more than {self._config.clause_timeout_s:g} s for one clause",
            ) from None
        finally:
            # An early stop (cancelled, the caller gone) must not leave the process behind.
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await process.wait()

    async def _read(
        self, process: asyncio.subprocess.Process, text: str
    ) -> AsyncGenerator[bytes, None]:
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stderr is not None
        # The text goes through stdin: as an argument, one starting with "-" is an option.
        process.stdin.write(text.encode())
        await process.stdin.drain()
        process.stdin.close()
        header = await process.stdout.read(_WAV_HEADER_BYTES)
        while len(header) < _WAV_HEADER_BYTES:
            more = await process.stdout.read(_WAV_HEADER_BYTES - len(header))
            if not more:
                break
            header += more
        if header[:4] != b"RIFF" or header[36:40] != b"data":
            stderr = (await process.stderr.read()).decode(errors="replace").strip()
            await process.wait()
            raise ProviderError(
                ErrorCode.PROVIDER_DOWN,
                self._op,
                f"espeak-ng wrote no WAV (exit {process.returncode}): {stderr[:200]}",
            )
        odd = b""  # a sample split between two reads waits for its second byte
        while audio := await process.stdout.read(_READ_BYTES):
            audio = odd + audio
            cut = len(audio) - len(audio) % 2
            odd = audio[cut:]
            if cut:
                yield audio[:cut]
        if await process.wait() != 0:
            stderr = (await process.stderr.read()).decode(errors="replace").strip()
            raise ProviderError(
                ErrorCode.PROVIDER_DOWN,
                self._op,
                f"espeak-ng failed (exit {process.returncode}): {stderr[:200]}",
            )


def create(config: Mapping[str, Any], shared: Shared) -> LocalEspeakSpeech:
    name = str(config.get("name", "local-espeak"))
    return LocalEspeakSpeech(parse_config(name, config, LocalEspeakConfig))
