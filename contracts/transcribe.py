"""Transcribe (speech-to-text) requests."""

from __future__ import annotations

import msgspec

from contracts.envelope import Name, Request


class TranscribeRequest(Request, frozen=True, kw_only=True, tag="transcribe"):
    model: Name
    # Exactly one of audio (bytes on the wire) or audio_url (a URL or a path the worker reads).
    audio: bytes | None = None
    audio_url: str | None = None
    language: str | None = None
    provider: Name | None = None

    def __post_init__(self) -> None:
        if (self.audio is None) == (self.audio_url is None):
            raise msgspec.ValidationError("exactly one of `audio` or `audio_url` must be set")
