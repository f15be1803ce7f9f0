"""Speech (text-to-speech) requests, in the shape of OpenAI's ``/v1/audio/speech``."""

from __future__ import annotations

from typing import Annotated, Final, Literal, get_args

import msgspec

from contracts.envelope import Name, Request

# OpenAI's limit on `input`; a longer text is refused (schema), never cut.
SPEECH_MAX_INPUT_CHARS: Final = 4096
# OpenAI's range of `speed`; a provider may serve a narrower one (its capabilities say).
SPEECH_MIN_SPEED: Final = 0.25
SPEECH_MAX_SPEED: Final = 4.0

# wav and pcm always; the compressed ones where the worker has an encoder for them (it
# refuses the others with invalid_input, naming what it can make).
SpeechFormat = Literal["wav", "pcm", "flac", "mp3", "opus"]
SPEECH_FORMATS: Final[tuple[SpeechFormat, ...]] = get_args(SpeechFormat)


class SpeechRequest(Request, frozen=True, kw_only=True, tag="speech"):
    model: Name
    input: Annotated[str, msgspec.Meta(min_length=1, max_length=SPEECH_MAX_INPUT_CHARS)]
    voice: Name
    response_format: SpeechFormat = "wav"
    speed: Annotated[float, msgspec.Meta(ge=SPEECH_MIN_SPEED, le=SPEECH_MAX_SPEED)] = 1.0
    # How to speak (tone, pace), for the models that take it; refused by the others.
    instructions: Annotated[str, msgspec.Meta(max_length=SPEECH_MAX_INPUT_CHARS)] | None = None
    provider: Name | None = None
