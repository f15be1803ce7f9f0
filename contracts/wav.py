"""The WAV header of streamed speech: written before the audio's length is known (its
sizes are 0xFFFFFFFF, as streaming servers write them), and set to the length once a
caller has the whole file."""

from __future__ import annotations

import struct
from typing import Final

WAV_HEADER_BYTES: Final = 44
_UNKNOWN: Final = 0xFFFFFFFF


def wav_header(sample_rate: int, *, data_bytes: int | None = None, sample_bytes: int = 2) -> bytes:
    """A 44-byte PCM WAV header for mono audio; ``data_bytes`` None: length unknown."""
    data = _UNKNOWN if data_bytes is None else data_bytes
    riff = _UNKNOWN if data_bytes is None else 36 + data_bytes
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", riff, b"WAVE", b"fmt ", 16, 1, 1, sample_rate,
        sample_rate * sample_bytes, sample_bytes, 8 * sample_bytes, b"data", data,
    )  # fmt: skip


def with_length(wav: bytes) -> bytes:
    """A whole streamed WAV file with its header's sizes set (a file of another shape, or
    one already complete, comes back as it is)."""
    if len(wav) < WAV_HEADER_BYTES or wav[:4] != b"RIFF" or wav[36:40] != b"data":
        return wav
    data_bytes = len(wav) - WAV_HEADER_BYTES
    return (
        wav[:4]
        + struct.pack("<I", 36 + data_bytes)
        + wav[8:40]
        + struct.pack("<I", data_bytes)
        + wav[WAV_HEADER_BYTES:]
    )
