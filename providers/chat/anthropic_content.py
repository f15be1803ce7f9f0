"""A message's content in the Messages API's words: text blocks, and images as image blocks
(a base64 data URL as a base64 source, an http(s) address as a url source)."""

from __future__ import annotations

from typing import Any, Final

from contracts.content import Content, ImagePart, ImageUrl, data_url_parts
from contracts.errors import ErrorCode
from providers.errors import ProviderError

# What the Messages API takes as an image's media type.
MEDIA_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def content_blocks(content: Content, *, op: str) -> str | list[dict[str, Any]]:
    """A string as it is; parts as text and image blocks, in their order."""
    if isinstance(content, str):
        return content
    return [
        image_block(part.image_url, op=op)
        if isinstance(part, ImagePart)
        else {"type": "text", "text": part.text}
        for part in content
    ]


def image_block(image: ImageUrl, *, op: str) -> dict[str, Any]:
    if image.detail not in (None, "auto"):
        # The API sizes every image itself: a "low" (cheap) or "high" (sharp) request for
        # one cannot be honoured, so it is refused rather than dropped.
        raise ProviderError(
            ErrorCode.INVALID_INPUT,
            op,
            f"the Messages API has no image detail setting: leave detail out or set it to "
            f"'auto' (not {image.detail!r})",
        )
    inline = data_url_parts(image.url)
    if inline is None:
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    media_type, data = inline
    if media_type not in MEDIA_TYPES:
        raise ProviderError(
            ErrorCode.INVALID_INPUT,
            op,
            f"the Messages API takes images of type {', '.join(sorted(MEDIA_TYPES))}, "
            f"not {media_type!r}",
        )
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
