"""Embed requests."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from contracts.envelope import Name, Request

# How the result carries its vectors (OpenAI's encoding_format): "float" as lists of numbers,
# "base64" as one block of little-endian float32 rows (`vectors_float32`: raw bytes in
# msgpack, a base64 string in JSON), a quarter of the size of float64 lists.
EncodingFormat = Literal["float", "base64"]


class EmbedRequest(Request, frozen=True, kw_only=True, tag="embed"):
    model: Name
    texts: Annotated[list[str], msgspec.Meta(min_length=1)]
    provider: Name | None = None
    # Row ids for batch jobs, returned beside each vector (OpenAI Batch's custom_id).
    custom_ids: list[str] | None = None
    encoding_format: EncodingFormat = "float"
    # Shorter vectors (OpenAI's dimensions): the model's vectors cut to their first
    # `dimensions` numbers and scaled back to unit length; more than the model has is refused.
    dimensions: Annotated[int, msgspec.Meta(ge=1)] | None = None

    def __post_init__(self) -> None:
        if self.custom_ids is not None and len(self.custom_ids) != len(self.texts):
            raise msgspec.ValidationError("`custom_ids` must have one id per text")
