"""Reads the audio of a transcribe request given by `audio_url`: a file under an allowed
root, or an http(s) URL fetched through the URL guard (workers/handlers/guarded_fetch.py).
Anything else is refused with a clear error."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlparse

from contracts.errors import ErrorCode
from providers.errors import ProviderError
from workers.handlers.guarded_fetch import GuardedFetch

_OP = "transcribe.audio"


class AudioLoader:
    def __init__(self, roots: list[str], max_bytes: int, fetch: GuardedFetch) -> None:
        self._roots = [Path(r).resolve() for r in roots]
        self._max_bytes = max_bytes
        self._fetch = fetch

    async def read(self, url: str) -> bytes:
        parsed = urlparse(url)
        if parsed.scheme in ("http", "https"):
            fetched = await self._fetch.get(
                url, field="audio_url", op=_OP, max_bytes=self._max_bytes
            )
            return fetched.body
        if parsed.scheme in ("", "file"):
            return await self._read(Path(parsed.path if parsed.scheme else url))
        raise ProviderError(
            ErrorCode.INVALID_INPUT, _OP, f"unsupported audio_url scheme {parsed.scheme!r}"
        )

    async def _read(self, path: Path) -> bytes:
        return await asyncio.to_thread(self._read_sync, path)

    def _read_sync(self, path: Path) -> bytes:
        resolved = path.resolve()
        if not any(resolved.is_relative_to(root) for root in self._roots):
            allowed = ", ".join(str(r) for r in self._roots) or "none configured"
            raise ProviderError(
                ErrorCode.INVALID_INPUT,
                _OP,
                f"audio path {str(path)!r} is outside the allowed audio roots ({allowed})",
            )
        if not resolved.is_file():
            raise ProviderError(ErrorCode.NOT_FOUND, _OP, f"audio file {str(path)!r} not found")
        if resolved.stat().st_size > self._max_bytes:
            raise self._too_large()
        return resolved.read_bytes()

    def _too_large(self) -> ProviderError:
        return ProviderError(
            ErrorCode.INVALID_INPUT, _OP, f"audio is larger than the {self._max_bytes}-byte limit"
        )

    async def aclose(self) -> None:
        await self._fetch.aclose()
