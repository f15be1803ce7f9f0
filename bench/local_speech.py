"""The speech handler with a local voice on this machine: time from the job's start (the
handler called) to its first audio chunk for a 20-word sentence, and the real-time factor
(time to make the audio / the audio's length). The default voice, eSpeak NG, or Piper (with
the optional extra `piper`). Used for docs/decisions/0041-speech-voices.md and
docs/benchmarks.md.

    .venv/bin/python -m bench.local_speech [--runs 20] [--voice local-espeak|local-piper]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.common import percentile
from contracts.replies import SpeechAudio, SpeechResult
from contracts.speech import SpeechRequest
from providers.router import ModelRouter
from providers.speech import speech_providers
from workers.handlers.reply_stream import ChunkStamper
from workers.handlers.speech import SpeechHandler, audio_piece_bytes
from workers.handlers.speech_encoding import AudioEncoders

# 20 words, three clauses.
SENTENCE = (
    "When the worker reads a speech job, it speaks the first clause at once, "
    "and the rest follows while listening."
)


async def main(runs: int, provider: str) -> None:
    voice = speech_providers.create(provider, {})
    await voice.load()
    model, speaker = voice.capabilities.models[0], voice.capabilities.voices[0]
    handler = SpeechHandler(
        ModelRouter("speech", [voice]), AudioEncoders({}), piece_bytes=audio_piece_bytes(900_000)
    )
    firsts, factors = [], []
    for run in range(runs):
        request = SpeechRequest(
            request_id=f"b{run}",
            model=model,
            input=SENTENCE,
            voice=speaker,
            response_format="pcm",  # every chunk is audio (a wav's first also has the header)
        )
        started = time.perf_counter()
        first: float | None = None
        async for chunk in handler.handle(request, ChunkStamper(request.request_id, 0)):
            if isinstance(chunk, SpeechAudio) and first is None:
                first = time.perf_counter() - started
            elif isinstance(chunk, SpeechResult):
                factors.append((time.perf_counter() - started) / chunk.usage.audio_s)
        assert first is not None
        firsts.append(first)
    print(f"{provider}: {len(SENTENCE.split())} words, {runs} runs")
    print(f"first audio after the job starts: p50 {percentile(firsts, 50) * 1000:.1f} ms, "
          f"p95 {percentile(firsts, 95) * 1000:.1f} ms")  # fmt: skip
    print(f"real-time factor: p50 {percentile(factors, 50):.3f}, "
          f"p95 {percentile(factors, 95):.3f}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--voice", choices=("local-espeak", "local-piper"), default="local-espeak")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.voice))
