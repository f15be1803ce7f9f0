"""What a request costs the worker that runs it, estimated when it is sent: the unit a
lane's fair queue shares out (docs/decisions/0044-fair-queuing-in-a-lane.md).

Units differ between kinds (tokens, seconds of audio, characters) but a lane serves one
kind, so the costs a worker compares are alike.
"""

from __future__ import annotations

import struct
from typing import Final

from contracts.codec import AnyRequest
from contracts.embed import EmbedRequest
from contracts.generate import GenerateRequest
from contracts.rerank import RerankRequest, rank_texts
from contracts.speech import SpeechRequest
from contracts.tokens import estimate_prompt_tokens, estimate_rerank_tokens, estimate_tokens
from contracts.transcribe import TranscribeRequest

# A chat that names no max_tokens gets what the local chat provider gives it by default.
DEFAULT_MAX_TOKENS: Final = 512
# Compressed audio (mp3, ogg) runs at about 128 kbit/s: 16,000 bytes a second.
COMPRESSED_AUDIO_BYTES_PER_S: Final = 16_000
# Audio the worker fetches from a URL: its length is not known before, so a minute.
AUDIO_URL_SECONDS: Final = 60
# A vectors request (or anything without a size of its own) costs one unit.
UNIT_COST: Final = 1


def job_cost(request: AnyRequest) -> int:
    """The estimated cost of running ``request``: never less than one."""
    match request:
        case GenerateRequest():
            prompt = estimate_prompt_tokens(request.messages, request.tools)
            return prompt + (request.max_tokens or DEFAULT_MAX_TOKENS)
        case EmbedRequest():
            return sum(estimate_tokens(text) for text in request.texts)
        case RerankRequest():
            documents = rank_texts(request.documents, request.rank_fields)
            return estimate_rerank_tokens(request.query, documents)
        case TranscribeRequest():
            return audio_seconds(request.audio) if request.audio else AUDIO_URL_SECONDS
        case SpeechRequest():
            return len(request.input)
        case _:
            return UNIT_COST


def audio_seconds(audio: bytes) -> int:
    """Seconds of ``audio``, rounded up: from a WAV header's byte rate, else at the rate of
    compressed audio."""
    rate = COMPRESSED_AUDIO_BYTES_PER_S
    if audio[:4] == b"RIFF" and audio[8:12] == b"WAVE" and len(audio) >= 32:
        rate = struct.unpack_from("<I", audio, 28)[0] or rate
    return max(-(-len(audio) // rate), 1)
