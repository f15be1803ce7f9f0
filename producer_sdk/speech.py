"""A speech reply's audio chunks joined into one file, checked against what the worker sent."""

from __future__ import annotations

import msgspec

from contracts.errors import FleetError
from contracts.replies import SpeechAudio, SpeechResult
from contracts.wav import with_length


class AudioIncomplete(FleetError):
    """The result says more audio was sent than arrived: the answer was replayed from the
    ledger, which keeps a job's result but not its audio (docs/decisions/0041): send the
    request again under a new request id."""


class SpokenAudio(msgspec.Struct, frozen=True, kw_only=True):
    """A whole speech answer: the file in the format asked for, and the result."""

    audio: bytes
    result: SpeechResult


class SpeechJoiner:
    def __init__(self) -> None:
        self._pieces: list[bytes] = []

    def restart(self) -> None:
        """The job started over: what came before is not part of its answer."""
        self._pieces.clear()

    def add(self, chunk: SpeechAudio) -> None:
        self._pieces.append(chunk.audio)

    def join(self, result: SpeechResult) -> SpokenAudio:
        audio = b"".join(self._pieces)
        if len(audio) != result.audio_bytes:
            raise AudioIncomplete(
                f"speech request {result.request_id}: {len(audio)} bytes of audio arrived, "
                f"the worker sent {result.audio_bytes}; send it again under a new request id"
            )
        if result.response_format == "wav":
            audio = with_length(audio)  # the stream's header could not know the length
        return SpokenAudio(audio=audio, result=result)
