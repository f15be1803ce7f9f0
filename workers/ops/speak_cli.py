"""`fleet speak`: a text spoken by the fleet's speech workers into an audio file, written as
its pieces arrive."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

from contracts.replies import SpeechAudio, SpeechResult
from contracts.speech import SPEECH_FORMATS
from contracts.wav import with_length
from producer_sdk import FleetClient, SpeechEvent, StreamRestarted
from workers.ops.tenant_options import add_tenant_options


def add_speak_command(
    sub: Any,
    connection_options: Callable[[argparse.ArgumentParser], None],
    client: Callable[[argparse.Namespace], FleetClient],
) -> None:
    speak = sub.add_parser("speak", help="speak a text through the fleet into an audio file")
    speak.add_argument("text", help="at most 4,096 characters")
    speak.add_argument("--out", type=Path, default=Path("speech.wav"), help="the audio file")
    speak.add_argument("--model", default="espeak-ng")
    speak.add_argument("--voice", default="alloy")
    speak.add_argument("--format", choices=SPEECH_FORMATS, default="wav")
    speak.add_argument("--speed", type=float, default=1.0)
    speak.add_argument("--instructions", help="how to speak, for the models that take it")
    speak.add_argument("--timeout", type=float, default=120.0)
    connection_options(speak)
    add_tenant_options(speak)
    speak.set_defaults(func=lambda args: asyncio.run(_speak(args, client(args))))


async def _speak(args: argparse.Namespace, fleet: FleetClient) -> int:
    async with fleet:
        started = time.perf_counter()
        try:
            first, result = await _written(args, fleet.stream_speech(
                args.text,
                model=args.model,
                voice=args.voice,
                response_format=args.format,
                speed=args.speed,
                instructions=args.instructions,
                timeout_s=args.timeout,
            ))  # fmt: skip
        except BaseException:
            args.out.unlink(missing_ok=True)  # no half-written file named like an answer
            raise
    if args.format == "wav":  # the streamed header could not know the length
        args.out.write_bytes(with_length(args.out.read_bytes()))
    print(
        f"[fleet] {result.model} ({result.voice}): {result.usage.audio_s:.1f}s of "
        f"{result.response_format} for {result.usage.characters} characters, first audio "
        f"after {first - started:.2f}s, written to {args.out}",
        file=sys.stderr,
    )
    return 0


async def _written(
    args: argparse.Namespace, stream: AsyncGenerator[SpeechEvent, None]
) -> tuple[float, SpeechResult]:
    """Each piece written to ``args.out`` as it arrives; when the first came, and the result."""
    first: float | None = None
    with args.out.open("wb") as out:
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                if isinstance(event, SpeechAudio):
                    first = first if first is not None else time.perf_counter()
                    out.write(event.audio)
                elif isinstance(event, StreamRestarted):
                    out.seek(0)
                    out.truncate()
                else:
                    return first or time.perf_counter(), event
    raise AssertionError("a reply stream ends with its final chunk or an exception")
