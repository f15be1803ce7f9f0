"""Embed requests."""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts.envelope import Request


class EmbedRequest(Request, frozen=True, kw_only=True, tag="embed"):
    model: str
    texts: Annotated[list[str], msgspec.Meta(min_length=1)]
    provider: str | None = None
    # Row ids for batch jobs, returned beside each vector (OpenAI Batch's custom_id).
    custom_ids: list[str] | None = None

    def __post_init__(self) -> None:
        if self.custom_ids is not None and len(self.custom_ids) != len(self.texts):
            raise msgspec.ValidationError("`custom_ids` must have one id per text")
