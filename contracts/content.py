"""A chat message's content: a string, or a list of parts (text and images) as OpenAI's
chat-completions API spells them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import msgspec

from contracts.strict import StrictStruct

# An http(s) address the provider fetches, or the picture itself as a base64 data URL.
ImageAddress = Annotated[
    str, msgspec.Meta(pattern=r"^(https?://|data:image/[A-Za-z0-9.+\-]+;base64,)")
]


class TextPart(StrictStruct, frozen=True, tag_field="type", tag="text"):
    text: str


class ImageUrl(StrictStruct, frozen=True):
    url: ImageAddress
    # OpenAI's resolution hint ("low": a fixed small cost); a provider without one refuses
    # "low" and "high" rather than drop them.
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(StrictStruct, frozen=True, tag_field="type", tag="image_url"):
    """A picture for a provider that declares vision; others refuse the request."""

    image_url: ImageUrl


ContentPart = TextPart | ImagePart
# A Sequence (decoded as a list) so that a list of text parts alone is content too.
Content = str | Annotated[Sequence[ContentPart], msgspec.Meta(min_length=1)]


def text_of(content: Content) -> str:
    """The text of the content: the string, or its text parts joined (images left out)."""
    if isinstance(content, str):
        return content
    return "".join(part.text for part in content if isinstance(part, TextPart))


def images_in(content: Content) -> list[ImageUrl]:
    if isinstance(content, str):
        return []
    return [part.image_url for part in content if isinstance(part, ImagePart)]


def data_url_parts(url: str) -> tuple[str, str] | None:
    """A base64 data URL's media type and data; None for an http(s) address."""
    if not url.startswith("data:"):
        return None
    head, _, data = url.partition(",")
    return head.removeprefix("data:").removesuffix(";base64"), data
