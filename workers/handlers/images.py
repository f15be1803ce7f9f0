"""The images of a generate request as the provider gets them: each http(s) `image_url` is
fetched by the worker through the URL guard and sent inline as a data URL, so that no
provider (a self-hosted server inside the operator's network least of all) fetches an
address a caller chose. Hosts the operator lists in `caller_urls.provider_hosts` are left
for the provider to fetch."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from urllib.parse import urlsplit

import msgspec

from contracts.content import ContentPart, ImagePart, ImageUrl, images_in
from contracts.errors import ErrorCode
from contracts.generate import ChatMessage
from providers.errors import ProviderError
from workers.handlers.guarded_fetch import GuardedFetch, caller_fetch
from workers.handlers.url_guard import host_matches
from workers.settings import CallerUrls

_OP = "generate.image"

# What the chat APIs take as an image (OpenAI's and Anthropic's lists are the same four).
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


class ImageInliner:
    def __init__(
        self, fetch: GuardedFetch, *, max_bytes: int, provider_hosts: Sequence[str] = ()
    ) -> None:
        self._fetch = fetch
        self._max_bytes = max_bytes
        self._provider_hosts = [h.lower().rstrip(".") for h in provider_hosts]

    async def inline(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        """The messages with every image the provider may not fetch itself made inline."""
        return [await self._message(m) for m in messages]

    async def _message(self, message: ChatMessage) -> ChatMessage:
        if isinstance(message.content, str) or not images_in(message.content):
            return message
        parts = [await self._part(part) for part in message.content]
        return msgspec.structs.replace(message, content=parts)

    async def _part(self, part: ContentPart) -> ContentPart:
        if not isinstance(part, ImagePart) or part.image_url.url.startswith("data:"):
            return part
        url = part.image_url.url
        if host_matches(_plain_host(url), self._provider_hosts):
            return part
        fetched = await self._fetch.get(url, field="image_url", op=_OP, max_bytes=self._max_bytes)
        if fetched.content_type not in IMAGE_TYPES:
            raise ProviderError(
                ErrorCode.INVALID_INPUT,
                _OP,
                f"image_url {url!r} is {fetched.content_type or 'of no named type'}, not an "
                f"image of type {', '.join(sorted(IMAGE_TYPES))}",
            )
        data = base64.b64encode(fetched.body).decode("ascii")
        inline = ImageUrl(
            url=f"data:{fetched.content_type};base64,{data}", detail=part.image_url.detail
        )
        return ImagePart(image_url=inline)

    async def aclose(self) -> None:
        await self._fetch.aclose()


def image_inliner(urls: CallerUrls) -> ImageInliner:
    """The inliner the operator configured (`[caller_urls]`)."""
    return ImageInliner(
        caller_fetch(urls), max_bytes=urls.max_image_bytes, provider_hosts=urls.provider_hosts
    )


def _plain_host(url: str) -> str:
    """The URL's host where no URL parser could read another one out of it (no user info,
    no backslash: "http://127.0.0.1\\@cdn.example.com/" is 127.0.0.1 to some); else ""."""
    netloc = urlsplit(url).netloc
    if "@" in netloc or "\\" in url:
        return ""
    return urlsplit(url).hostname or ""
