"""Reads the audio of a transcribe request given by `audio_url`: a file under an allowed
root, or an http(s) URL that the UrlGuard lets through (redirects are followed by hand, each
target checked again). Anything else is refused with a clear error."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlparse

import httpx

from contracts.errors import ErrorCode
from providers.errors import ProviderError
from workers.handlers.url_guard import UrlGuard

_OP = "transcribe.audio"


_MAX_REDIRECTS = 5


class AudioLoader:
    def __init__(
        self,
        roots: list[str],
        max_bytes: int,
        client: httpx.AsyncClient | None = None,
        guard: UrlGuard | None = None,
    ) -> None:
        self._roots = [Path(r).resolve() for r in roots]
        self._max_bytes = max_bytes
        self._client = client or httpx.AsyncClient(timeout=30.0)
        self._guard = guard or UrlGuard()

    async def read(self, url: str) -> bytes:
        parsed = urlparse(url)
        if parsed.scheme in ("http", "https"):
            return await self._fetch(url)
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

    async def _fetch(self, url: str) -> bytes:
        for _ in range(_MAX_REDIRECTS + 1):
            await self._guard.check(url)
            body, redirect = await self._fetch_once(url)
            if redirect is None:
                return body
            url = redirect
        raise ProviderError(
            ErrorCode.INVALID_INPUT, _OP, f"audio_url redirects more than {_MAX_REDIRECTS} times"
        )

    async def _fetch_once(self, url: str) -> tuple[bytes, str | None]:
        """The body, or where the server redirects to."""
        try:
            async with self._client.stream("GET", url, follow_redirects=False) as response:
                if response.is_redirect:
                    target = response.headers.get("location", "")
                    return b"", str(response.url.join(target))
                if response.status_code == 404:
                    raise ProviderError(ErrorCode.NOT_FOUND, _OP, f"audio {url!r} not found")
                if response.status_code >= 400:
                    raise ProviderError(
                        ErrorCode.PROVIDER_DOWN,
                        _OP,
                        f"fetching audio {url!r} failed with HTTP {response.status_code}",
                    )
                body = bytearray()
                async for part in response.aiter_bytes():
                    body += part
                    if len(body) > self._max_bytes:
                        raise self._too_large()
                return bytes(body), None
        except httpx.TimeoutException as exc:
            raise ProviderError(
                ErrorCode.TIMEOUT, _OP, f"fetching audio {url!r} timed out"
            ) from exc
        except httpx.HTTPError as exc:
            message = f"fetching audio {url!r} failed: {type(exc).__name__}"
            raise ProviderError(ErrorCode.PROVIDER_DOWN, _OP, message) from exc

    def _too_large(self) -> ProviderError:
        return ProviderError(
            ErrorCode.INVALID_INPUT, _OP, f"audio is larger than the {self._max_bytes}-byte limit"
        )

    async def aclose(self) -> None:
        await self._client.aclose()
